"""Tests of the development tools (devenv/)."""
