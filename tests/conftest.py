import torch

# Denormal numbers in gradients slow CPU convolutions by more than 10x on some processors.
torch.set_flush_denormal(True)
# One intra-op thread: the tests run many tiny CPU ops, where two threads on a shared 2-core machine stall on
# thread barriers (measured: resume tests 763 s with 2 threads, 10 s with 1). Subprocess studies are unaffected.
torch.set_num_threads(1)
