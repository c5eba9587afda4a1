"""The model families of SPEC section 4: their layers and parameter counts."""

import keras
import numpy as np
import pytest

import mnist_digit_recognition as mdr


def layer_kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def test_cnn_layers_and_parameters():
    model = mdr.build_model("cnn")
    assert layer_kinds(model) == [
        "Conv2D", "BatchNormalization", "ReLU", "Conv2D", "BatchNormalization", "ReLU",
        "MaxPooling2D", "Dropout", "Flatten", "Dense", "BatchNormalization", "ReLU", "Dropout",
        "Dense"]
    # 320 + 18,496 + 1,179,776 + 1,290 weights, and 4 x (32 + 64 + 128) batch-norm numbers
    assert model.count_params() == 1_200_778
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 2 * (32 + 64 + 128)
    assert model.output_shape == (None, 10)


def test_cnn_without_batchnorm_drops_exactly_the_three_batchnorm_layers():
    model = mdr.build_model("cnn", batchnorm=False)
    assert "BatchNormalization" not in layer_kinds(model)
    assert len(model.layers) == len(mdr.build_model("cnn").layers) - 3
    assert model.count_params() == 1_199_882
    assert model.non_trainable_weights == []


def test_dropout_rates_are_configurable():
    model = mdr.build_model("cnn", conv_dropout=0.1, dense_dropout=0.0)
    rates = [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"]
    assert rates == [0.1, 0.0]


def test_deep_cnn_has_the_published_parameter_count():
    model = mdr.build_model("deep-cnn")
    assert model.count_params() == 730_602
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 256
    assert layer_kinds(model).count("Conv2D") == 5


def test_mlp_is_flatten_dense512_dense10():
    model = mdr.build_model("mlp")
    assert layer_kinds(model) == ["Flatten", "Dense", "Dense"]
    assert model.count_params() == 784 * 512 + 512 + 512 * 10 + 10


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="arch"):
        mdr.build_model("resnet")


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_compiled_model_trains_a_step_with_each_optimizer(optimizer, small_npz):
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    model = mdr.compile_model(mdr.build_model("cnn"), optimizer, learning_rate=0.002)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.002)
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    assert model.optimizer.iterations.numpy() == 2


def test_mixed_precision_model_computes_in_bfloat16_and_outputs_float32():
    model = mdr.build_model("cnn", dtype="mixed_bfloat16")
    assert model.layers[0].compute_dtype == "bfloat16"
    assert model.layers[0].variable_dtype == "float32"
    output = model(np.zeros((2, 28, 28, 1), np.float32))
    assert output.dtype == "float32"
    np.testing.assert_allclose(np.sum(output, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("shape", [(32, 26, 26, 8), (32, 16)], ids=["conv", "dense"])
def test_fused_batchnorm_computes_what_keras_batchnorm_does(shape):
    x = np.random.default_rng(0).normal(2.0, 3.0, shape).astype(np.float32)
    stock = keras.layers.BatchNormalization(momentum=0.9)
    fused = mdr.FusedBatchNormalization(momentum=0.9)
    for layer in (stock, fused):
        layer.build(shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, shape[-1]))
        layer.beta.assign(np.linspace(-1, 1, shape[-1]))
    np.testing.assert_allclose(fused(x, training=True), stock(x, training=True), atol=2e-5)
    np.testing.assert_allclose(fused.moving_mean, stock.moving_mean, rtol=1e-5)
    np.testing.assert_allclose(fused.moving_variance, stock.moving_variance, rtol=1e-5)
    np.testing.assert_allclose(fused(x, training=False), stock(x, training=False), atol=1e-5)


def test_saveable_copy_has_standard_layers_same_weights_and_optimizer_state(small_npz):
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    options = {"arch": "cnn", "batchnorm": True, "conv_dropout": 0.25, "dense_dropout": 0.5}
    model = mdr.compile_model(mdr.build_model(**options, dtype="mixed_bfloat16",
                                              fused_batchnorm=True))
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    copy = mdr.saveable_copy(model, options)
    assert layer_kinds(copy) == layer_kinds(mdr.build_model("cnn"))  # Keras' own BN layers
    assert all(layer.dtype_policy.name == "float32" for layer in copy.layers)
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(copy.optimizer.iterations.numpy()) == 2
    bf16 = model.predict(x_train[:100], verbose=0).argmax(1)
    fp32 = copy.predict(x_train[:100], verbose=0).argmax(1)
    assert np.mean(bf16 == fp32) >= 0.95


def test_float16_training_gets_loss_scaling_and_saves_without_it(small_npz):
    """Keras scales the loss of float16 training only under a global dtype policy; our
    per-layer policy must get it too, and the saved float32 copy must not carry it."""
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    options = {"arch": "mlp", "batchnorm": True, "conv_dropout": 0.25, "dense_dropout": 0.5}
    model = mdr.compile_model(mdr.build_model(**options, dtype="mixed_float16"))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    copy = mdr.saveable_copy(model, options)
    assert isinstance(copy.optimizer, keras.optimizers.Adam)
    assert int(copy.optimizer.iterations.numpy()) == 2
    assert not isinstance(mdr.compile_model(mdr.build_model("mlp")).optimizer,
                          keras.optimizers.LossScaleOptimizer)


def test_precision_flag_forces_either_way():
    assert mdr.choose_precision(False) == "float32"
    assert mdr.choose_precision(True) in ("mixed_bfloat16", "mixed_float16")
    assert mdr.choose_precision(None) == mdr.fast_precision_policy()
