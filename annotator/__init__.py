"""Batch 68-point face landmark annotation: dlib detection, our network, 300-W output."""
