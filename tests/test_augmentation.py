"""Augmentation: both engines apply ImageDataGenerator's transforms; the tf.data one draws each
epoch's from that epoch's seeds (interruption.epoch_seeds), so a resumed run continues them."""

import numpy as np
import pytest

import mnist_digit_recognition as mdr
from mnist_digits import interruption


@pytest.fixture(scope="module")
def one_digit_many_times(small_npz):
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    return np.repeat(x_train[:1], 32, axis=0), np.repeat(y_train[:1], 32)


def batches(x, y, seeds, recipe=mdr.RECIPE, batch_size=32):
    """The images of every batch the layers engine makes from x, epoch after epoch."""
    dataset = mdr.make_train_dataset(x, y, batch_size, mdr.make_augmenter(recipe), seeds)
    return [images.numpy() for images, _ in dataset]


def test_layers_engine_transforms_each_image_differently_every_epoch(one_digit_many_times):
    x, y = one_digit_many_times
    epoch1, epoch2 = batches(x, y, interruption.epoch_seeds(1, 2))
    assert epoch1.shape == (32, 28, 28, 1) and epoch1.dtype == np.float32
    assert 0.0 <= epoch1.min() and epoch1.max() <= 1.0
    distinct = {img.tobytes() for img in epoch1}
    assert len(distinct) == 32, "every copy of the digit should get its own random transform"
    assert not np.allclose(epoch1, epoch2), "a new epoch must draw new transforms"
    # A transform moves ink around but keeps the digit: most of the ink survives.
    assert 0.7 < epoch1.sum() / (x.sum()) < 1.3


def test_layers_engine_is_reproducible_with_a_seed(one_digit_many_times):
    x, y = one_digit_many_times
    runs = [batches(x, y, interruption.epoch_seeds(7, 2)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], batches(x, y, interruption.epoch_seeds(8, 2)))


def test_a_resumed_run_gets_the_batches_of_the_epochs_it_has_left(small_npz):
    """From epoch 3 of 4, the batches (order and transforms) are the whole run's from epoch 3."""
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    x, y = x_train[:100], y_train[:100]  # 4 batches an epoch, the last one short
    seeds = interruption.epoch_seeds(5, 4)
    whole, resumed = batches(x, y, seeds), batches(x, y, seeds[2:])
    assert len(whole) == 16 and len(resumed) == 8
    for a, b in zip(whole[8:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(whole[0], whole[4]), "each epoch shuffled and augmented anew"


def test_zero_ranges_leave_images_unchanged(one_digit_many_times):
    x, y = one_digit_many_times
    recipe = mdr.Recipe(rotation_range=0, zoom_range=0, shift_range=0)
    batch, = batches(x, y, interruption.epoch_seeds(1, 1), recipe)
    np.testing.assert_allclose(batch, x, atol=1e-5)


def test_shift_range_moves_the_centre_of_ink_by_up_to_that_fraction(one_digit_many_times):
    x, y = one_digit_many_times
    recipe = mdr.Recipe(rotation_range=0, zoom_range=0, shift_range=0.1)
    batch = batches(x, y, interruption.epoch_seeds(2, 1), recipe)[0][..., 0]
    columns = np.arange(28)
    centre = (x[0, ..., 0].sum(axis=0) * columns).sum() / x[0].sum()
    shifts = [(img.sum(axis=0) * columns).sum() / img.sum() - centre for img in batch]
    assert max(abs(s) for s in shifts) <= 0.1 * 28 + 0.5
    assert max(abs(s) for s in shifts) > 0.5


def test_imagedatagenerator_engine_is_keras_own_class(one_digit_many_times):
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    x, y = one_digit_many_times
    generator = mdr.make_image_data_generator(mdr.Recipe())
    assert isinstance(generator, ImageDataGenerator)
    assert generator.rotation_range == 10 and generator.zoom_range == [0.9, 1.1]
    assert generator.width_shift_range == 0.1 and generator.height_shift_range == 0.1
    images, labels = generator.flow(x, y, batch_size=32, seed=1)[0]
    assert images.shape == (32, 28, 28, 1)
    assert len({img.tobytes() for img in images}) == 32


@pytest.mark.parametrize("engine", ["layers", "imagedatagenerator"])
def test_train_uses_the_engine_it_is_asked_for(engine, small_npz, monkeypatch):
    """Keras' ImageDataGenerator transforms every training image (within the recipe's 10
    degrees) when its engine is asked for, and never otherwise. Its transform is watched,
    not replaced: it runs as it would."""
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    angles = []
    keras_transform = ImageDataGenerator.apply_transform

    def watched(self, x, transform_parameters):
        angles.append(transform_parameters["theta"])
        return keras_transform(self, x, transform_parameters)
    monkeypatch.setattr(ImageDataGenerator, "apply_transform", watched)
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    recipe = mdr.Recipe(arch="classic-cnn", epochs=2, augmentation_engine=engine, seed=1)
    model = mdr.compile_model(mdr.build_model_for(recipe))
    history = mdr.train(model, x_train[:320], y_train[:320], recipe, verbose=0)
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(row["epoch_seconds"] > 0 and "val_loss" in row for row in history)
    if engine == "layers":
        assert angles == [], "the layers engine ran ImageDataGenerator"
    else:
        assert len(angles) >= 2 * 288, "not every training image of both epochs was transformed"
        assert max(map(abs, angles)) <= 10 and len(set(angles)) > 100


def test_the_last_third_of_the_epochs_halve_the_learning_rate():
    schedule = mdr.learning_rate_schedule(mdr.Recipe(epochs=15))
    rates = []
    rate = 1e-3
    for epoch in range(15):
        rate = schedule(epoch, rate)
        rates.append(rate)
    assert rates[:10] == [1e-3] * 10
    assert rates[10:] == pytest.approx([5e-4, 2.5e-4, 1.25e-4, 6.25e-5, 3.125e-5])
    # Never below the floor, and never raises a rate a user set below it.
    assert schedule(14, 1.2e-5) == 1e-5 and schedule(14, 1e-6) == 1e-6


def test_the_history_records_the_rate_each_epoch_ran_at(small_npz):
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    recipe = mdr.Recipe(arch="classic-cnn", epochs=3, validation_split=0, seed=1)
    model = mdr.compile_model(mdr.build_model_for(recipe))
    history = mdr.train(model, x_train[:320], y_train[:320], recipe, verbose=0)
    rates = [row["learning_rate"] for row in history]
    assert rates[0] == pytest.approx(1e-3)
    assert rates[2] <= 0.5 * rates[1] + 1e-9, "the last of 3 epochs runs at half the rate"
    assert float(model.optimizer.learning_rate) <= rates[2]


def test_the_cnn_trains_its_first_epoch_without_dropout(small_npz):
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    rates_seen, accuracy = [], {}
    # Dropout 0.9 at the cnn's three places: an epoch that drops out learns little.
    for name, rate, first in (("from 1", 0.9, 1), ("from 2", 0.9, 2), ("none", 0.0, 1)):
        recipe = mdr.Recipe(epochs=2, conv_dropout=rate, dense_dropout=rate, augment=False,
                            validation_split=0, seed=1, dropout_from_epoch=first)
        model = mdr.compile_model(mdr.build_model_for(recipe))
        rates = lambda: [layer.rate for layer in model.layers if "dropout" in layer.name]
        probe = mdr.keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: rates_seen.append((name, epoch + 1, rates())))
        history = mdr.train(model, x_train[:320], y_train[:320], recipe, callbacks=[probe],
                            verbose=0)
        accuracy[name] = [row["accuracy"] for row in history]
        assert rates() == [rate] * 3, "the layers are left as built"
    assert rates_seen[:4] == [("from 1", 1, [0.9] * 3), ("from 1", 2, [0.9] * 3),
                              ("from 2", 1, [0.0] * 3), ("from 2", 2, [0.9] * 3)]
    assert accuracy["from 2"][0] > accuracy["from 1"][0] + 0.1, "epoch 1 still dropped out"
    assert accuracy["from 2"][1] < accuracy["none"][1] - 0.1, "epoch 2 did not drop out"
    assert mdr.RECIPE.dropout_from_epoch is None and mdr.DROPOUT_FROM_EPOCH == {"cnn": 2}


def test_augmented_examples_show_each_digit_beside_its_transforms(small_npz):
    (x_train, _), _ = mdr.load_mnist(small_npz)
    for engine in mdr.AUGMENTATION_ENGINES:
        examples = mdr.augmented_examples(x_train[:3], mdr.Recipe(augmentation_engine=engine))
        assert examples.shape == (3, 8, 28, 28)
        np.testing.assert_array_equal(examples[:, 0], x_train[:3, ..., 0])
        assert all(not np.allclose(examples[i, 0], examples[i, j])
                   for i in range(3) for j in range(1, 8))
