"""The workflows the CLI calls, one module per command: train, pretrain, distill, evaluate, predict, export, demo."""
