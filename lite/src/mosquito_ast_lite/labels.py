"""The words predict's rows use besides species names, and the defaults of its thresholds: kept free of numpy,
because the runtime's argument parser reads them before numpy starts (`--threads` must come first)."""

UNCERTAIN = "uncertain"  # a species' probability below --min-confidence
NO_DETECTION = "no detection"  # the presence gate found no flight tone; nothing was scored
BACKGROUND = "background"  # a class of that name (any case) is "no insect" too
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_PRESENCE_DB = 6.0
