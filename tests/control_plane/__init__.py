"""Tests of the control plane and of the controls watcher, against real NATS and processes."""
