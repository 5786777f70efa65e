"""deepdistill: deep contrastive-RL teachers, shallow students, ONNX exports."""

__version__ = "0.1.0"
