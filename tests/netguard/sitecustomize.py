# Loaded at start-up by every Python subprocess of the test suite (PYTHONPATH is set by
# tests/conftest.py): blocks network traffic outside loopback. See openwit_netguard.py.
import openwit_netguard

openwit_netguard.install()
