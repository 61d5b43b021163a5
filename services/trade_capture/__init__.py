"""Trade capture: records venues' execution reports as order events, or as execution breaks."""
