"""setuptools shim: metadata lives in setup.cfg (Dataflow's --setup_file needs this file)."""
from setuptools import setup

setup()
