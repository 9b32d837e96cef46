"""Samplers: schedules, UniPC, DMD, pyramid transitions and guidance — pure tensor functions."""
