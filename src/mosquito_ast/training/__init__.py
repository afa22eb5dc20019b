"""Lightning modules and run functions for pretraining and fine-tuning."""
