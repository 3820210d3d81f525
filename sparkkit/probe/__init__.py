"""The probe suite: measure every service of a stack as the benchmark report did, without its bugs."""
