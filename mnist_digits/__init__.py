"""What mnist_digit_recognition.py leans on, a module per concern (SPEC section 1):

    mnist_files     MNIST's files: .npz, the IDX format, Keras' download, checks, checksum
    hardware        devices, mixed precision, the fused batch-norm kernel, tf.distribute
    interruption    Ctrl-C and SIGTERM during a run, the work folder --resume continues from
    model_files     the model directory: written atomically, the previous generation, loading
    classifier      a saved model on LiteRT (or Keras): arrays and pictures in, answers out,
                    "not a digit" from the model directory's not_a_digit/ network, its
                    reader/ of digits that touch
    pictures        people's pictures of digits -> MNIST's 28x28 form (NumPy, SciPy, Pillow)
    page            a photo of a sheet on a table -> the sheet alone, upright (for pictures)
    touching        digits that touch, where the not_a_digit/ network says so: cut apart, or
                    read whole by not_a_digit/reader/
    serve           the HTTP server and its drawing page (serve_page.html)
    figures         the model directory's pictures (matplotlib)
    actions         evaluate's flags and report; predict and serve
    cli             argparse helpers, the training flags' checks, --compare-batchnorm, tables
    errors, lazy    the errors a user can fix; TensorFlow imported on first use

Importing the package, or any module of it, only defines things; pictures, serve, figures and
the classifier on LiteRT never import TensorFlow. No module imports the script.
"""
