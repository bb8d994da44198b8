"""Training: one training function over transformers/TRL, its callbacks, precision and thread
policy, and the LoRA/QLoRA set-up."""
