"""Training: offloaded data, Frame-Aware Corrupt, objectives and one trainer for every stage."""
