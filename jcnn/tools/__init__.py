"""Tools that read a network's facts without running it: ``summary``, ``receptive`` fields."""
