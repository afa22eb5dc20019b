"""The training library: the Lightning loop, datasets, optimizers and probes the train, pretrain and distill commands use."""

import warnings

# Lightning messages every run would print and no user can act on: batches are slices of feature
# tensors already in memory (decoding ran in workers before), so more loader workers would only add
# process start-up and copies; Lightning's own use of a deprecated torch pytree API; and a resumed run
# finding the checkpoint folder it resumes from.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
