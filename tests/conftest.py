"""Shared test settings: quiet TensorFlow, CPU only, deterministic hashing."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
