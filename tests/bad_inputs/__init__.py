"""The catalogue of misuse: every mistake jcnn checks, what it raises and what it says."""
