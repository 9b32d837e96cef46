"""Triton kernels with forward and backward; each is optional and tested equal to the reference path."""
