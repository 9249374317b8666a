"""Benchmarks of bpcore against its peers (BENCHMARKS.md); run with pytest."""
