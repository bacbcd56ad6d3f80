"""Effects of magnesium on sleep: night tagging, estimates with honest intervals, trial plans."""
