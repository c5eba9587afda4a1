"""The pictures of a model directory (SPEC section 5), drawn with matplotlib: the confusion
matrix, the most confident mistakes, the training curves and augmented training samples."""

import contextlib
import math
import os
from pathlib import Path

import numpy as np

def draw_reports(folder, results=None, x_test=None, y_test=None, probabilities=None,
                 history=None, examples=None):
    """Write the pictures of a model beside it (those whose data is given): confusion_matrix.png,
    misclassified.png, training_curves.png, augmentation.png. Each replaces its old file only
    once complete. Returns {file name: the OSError that kept it from being written}."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    from matplotlib import pyplot

    figures = {}
    if results is not None:
        figures["confusion_matrix.png"] = confusion_figure(pyplot, results["confusion_matrix"])
    if probabilities is not None:
        figures["misclassified.png"] = mistakes_figure(pyplot, x_test, y_test, probabilities)
    if history:
        figures["training_curves.png"] = curves_figure(pyplot, history)
    if examples is not None:
        figures["augmentation.png"] = augmentation_figure(pyplot, examples)
    failures = {}
    for name, figure in figures.items():
        partial = Path(folder) / f".{name}.partial"
        try:
            figure.savefig(partial, format="png", dpi=100, bbox_inches="tight")
            os.replace(partial, Path(folder) / name)
        except OSError as error:
            failures[name] = error
        finally:  # also when interrupted: no half-written picture is left
            with contextlib.suppress(OSError):
                partial.unlink()
            pyplot.close(figure)
    return failures


def confusion_figure(pyplot, confusion):
    from matplotlib.colors import LogNorm

    confusion = np.asarray(confusion)
    mistakes = int(confusion.sum() - confusion.trace())
    figure, axes = pyplot.subplots(figsize=(7.5, 6.2))
    image = axes.imshow(np.ma.masked_equal(confusion, 0), cmap="Blues",
                        norm=LogNorm(vmin=1, vmax=max(2, confusion.max())))
    for (true, predicted), count in np.ndenumerate(confusion):
        if count:
            dark = count > np.sqrt(confusion.max())
            axes.text(predicted, true, str(count), ha="center", va="center", fontsize=9,
                      color="white" if dark else "black",
                      fontweight="normal" if true == predicted else "bold")
    axes.set(xticks=range(len(confusion)), yticks=range(len(confusion)),
             xlabel="predicted digit", ylabel="true digit",
             title=f"Test images by true and predicted digit ({mistakes} mistakes "
                   f"in {confusion.sum():,})")
    figure.colorbar(image, ax=axes, label="images (log scale)")
    return figure


def mistakes_figure(pyplot, images, labels, probabilities, columns=8, most=32):
    """The most confident mistakes first, each titled in words (readable without colour)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:most]
    rows = max(1, math.ceil(len(wrong) / columns))
    figure, axes = pyplot.subplots(rows, columns, figsize=(columns * 1.45, rows * 1.65),
                                   squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, wrong):
        axis.imshow(images[index].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        axis.set_title(f"true {labels[index]}, predicted\n{predicted[index]} "
                       f"({probabilities[index, predicted[index]]:.0%})", fontsize=8)
    figure.suptitle(f"The {len(wrong)} most confident mistakes on the test set"
                    if len(wrong) else "No mistakes on the test set")
    return figure


def curves_figure(pyplot, history):
    epochs = [row["epoch"] for row in history]
    figure, axes = pyplot.subplots(1, 3, figsize=(13, 3.8))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, [row[metric] for row in history], "o-",
                  label="training (augmented, dropout as trained)")
        if all(f"val_{metric}" in row for row in history):
            axis.plot(epochs, [row[f"val_{metric}"] for row in history], "s--",
                      label="validation (held-out images)")
    figure.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=2,
                  bbox_to_anchor=(0.37, 0.0))  # below the plots, clear of every curve
    axes[2].plot(epochs, [row["learning_rate"] for row in history], "o-")
    for axis, title in zip(axes, ("loss (log scale)", "accuracy", "learning rate (log scale)")):
        axis.set(xlabel="epoch", title=title)
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    return figure


def augmentation_figure(pyplot, examples):
    rows, columns = examples.shape[:2]
    figure, axes = pyplot.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.15),
                                   squeeze=False)
    for (row, column), axis in np.ndenumerate(axes):
        axis.imshow(examples[row, column], cmap="gray_r", vmin=0, vmax=1)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0, 0].set_title("original", fontsize=9)
    axes[0, 1].set_title("augmented versions →", fontsize=9, loc="left")
    figure.suptitle("Training digits, and random rotations, zooms and shifts of them as the "
                    "network sees them", fontsize=10)
    return figure
