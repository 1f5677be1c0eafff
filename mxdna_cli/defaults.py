"""The engine's choices and defaults, in a module that imports nothing heavy: the CLI builds its
options from them without importing torch, so `mxdna --help` starts fast."""

STRANDS = ("forward", "reverse", "both")
POOLINGS = ("mean", "max", "cls", "none")
OUT_DTYPES = ("float32", "float16")
FORMATS = ("npy", "tsv")
DTYPE_NAMES = ("float32", "bfloat16", "float16")  # compute precision (autocast); see runtime.DTYPES
DEFAULT_BATCH_TOKENS = 16384
DEFAULT_MIN_WEIGHT = 0.05
DEFAULT_TRACK_STEP = 50
PROMOTER_LABEL = "promoter"
