"""Lightning modules and run functions for pretraining and fine-tuning."""

import warnings

# Two Lightning messages every run would print and no user can act on: batches are slices of feature
# tensors already in memory (decoding ran in workers before), so more loader workers would only add
# process start-up and copies; and Lightning's own use of a deprecated torch pytree API.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
