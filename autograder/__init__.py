"""Zero-trust autograder for the lecture 3 labs of a deep-learning course."""
