"""The EmoBed model (``emobed``), its encoder stacks (``stacks``), losses and metrics. Imports
Keras; of the package only the ground floor."""
