"""Scoring with members: loading them, their votes, and their ONNX graphs (int8 among them)."""
