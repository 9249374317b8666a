"""Benchmarks of bpcore against its peers (benches/README.md); run with pytest."""
