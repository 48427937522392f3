"""Feedback: agents flag served answers, admins review them, approved corrections become a new dataset version."""
