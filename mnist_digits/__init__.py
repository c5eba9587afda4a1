"""What mnist_digit_recognition.py leans on, a module per concern (SPEC section 1).

Importing the package, or any module of it, only defines things; the modules that need no
TensorFlow (pictures, serve, figures) never import it.
"""
