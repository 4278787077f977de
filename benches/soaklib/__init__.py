"""The parts of benches/soak.py: the cluster and its faults, the traffic, the record."""
