"""Tests of the deployment files (deploy/, Procfile, Dockerfile, locks in use)."""
