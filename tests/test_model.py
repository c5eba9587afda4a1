"""The model families of SPEC section 4: their layers and parameter counts."""

import keras
import numpy as np
import pytest

import mnist_digit_recognition as mdr
from mnist_digits import hardware, model_files
from conftest import expected_precisions


def layer_kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def test_cnn_is_seven_convolutions_with_batch_norm_after_each():
    model = mdr.build_model("cnn")
    kinds = layer_kinds(model)
    assert kinds.count("Conv2D") == 7 and kinds.count("BatchNormalization") == 7
    assert [kinds[i + 1] for i, kind in enumerate(kinds) if kind == "Conv2D"] == \
        ["BatchNormalization"] * 7
    strided = [layer for layer in model.layers if getattr(layer, "strides", None) == (2, 2)]
    assert [layer.kernel_size for layer in strided] == [(5, 5), (5, 5)]
    # C. Deotte's network: 325,578 weights, and 4 numbers per channel in each batch norm, half
    # of them trainable
    assert model.count_params() == 327_242
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 2 * (3 * 32 + 3 * 64 + 128)
    assert [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"] == \
        [0.4, 0.4, 0.4]
    assert model.output_shape == (None, 10)


def test_classic_cnn_layers_and_parameters():
    model = mdr.build_model("classic-cnn")
    assert layer_kinds(model) == [
        "Conv2D", "BatchNormalization", "ReLU", "Conv2D", "BatchNormalization", "ReLU",
        "MaxPooling2D", "Dropout", "Flatten", "Dense", "BatchNormalization", "ReLU", "Dropout",
        "Dense"]
    # 320 + 18,496 + 1,179,776 + 1,290 weights, and 4 x (32 + 64 + 128) batch-norm numbers
    assert model.count_params() == 1_200_778
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 2 * (32 + 64 + 128)


@pytest.mark.parametrize("arch, removed, parameters", [("cnn", 7, 325_578),
                                                        ("classic-cnn", 3, 1_199_882),
                                                        ("deep-cnn", 1, 730_090)])
def test_no_batchnorm_drops_exactly_every_batchnorm_layer(arch, removed, parameters):
    model = mdr.build_model(arch, batchnorm=False)
    assert "BatchNormalization" not in layer_kinds(model)
    assert len(model.layers) == len(mdr.build_model(arch).layers) - removed
    assert model.count_params() == parameters
    assert model.non_trainable_weights == []


@pytest.mark.parametrize("arch, rates", [("cnn", [0.1, 0.1, 0.0]), ("classic-cnn", [0.1, 0.0])])
def test_dropout_rates_are_configurable(arch, rates):
    model = mdr.build_model(arch, conv_dropout=0.1, dense_dropout=0.0)
    assert [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"] == rates


def test_each_network_has_its_own_dropout_unless_told():
    def dropout(**recipe):
        resolved = mdr.Recipe(**recipe).resolved()
        return resolved.conv_dropout, resolved.dense_dropout, resolved.dropout_from_epoch

    assert dropout() == (0.4, 0.4, 2)
    assert dropout(arch="classic-cnn") == (0.25, 0.5, 1)
    assert dropout(arch="deep-cnn", dense_dropout=0.3, dropout_from_epoch=3) == (0.25, 0.3, 3)
    assert dropout(conv_dropout=0.0) == (0.0, 0.4, 2)  # 0 is a rate, not "the network's own"
    assert mdr.Recipe().resolved().resolved() == mdr.Recipe().resolved()


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


@pytest.mark.parametrize("optimizer", mdr.OPTIMIZERS)
def test_compiled_model_trains_a_step_with_each_optimizer(optimizer, small_npz):
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    recipe = mdr.Recipe(optimizer=optimizer, learning_rate=0.002)
    model = mdr.compile_model(mdr.build_model("classic-cnn"), recipe)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.002)
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    assert model.optimizer.iterations.numpy() == 2


def test_mixed_precision_model_computes_in_bfloat16_and_outputs_float32():
    model = mdr.build_model("classic-cnn", dtype="mixed_bfloat16")
    assert model.layers[0].compute_dtype == "bfloat16"
    assert model.layers[0].variable_dtype == "float32"
    output = model(np.zeros((2, 28, 28, 1), np.float32))
    assert output.dtype == "float32"
    np.testing.assert_allclose(np.sum(output, axis=1), 1.0, rtol=1e-6)  # 10 x 2**-24 = 6e-7


@pytest.mark.parametrize("shape", [(8, 6, 6, 5), (8, 5)], ids=["convolution", "dense"])
def test_the_fused_batch_norm_layer_computes_what_keras_layer_does(shape):
    x = np.random.default_rng(0).normal(2.0, 3.0, shape).astype(np.float32)
    keras_layer = keras.layers.BatchNormalization(momentum=0.9)
    fused_layer = hardware.fused_batchnorm_layer()(momentum=0.9)
    for layer in (keras_layer, fused_layer):
        layer.build(shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, shape[-1]))
        layer.beta.assign(np.linspace(-1.0, 1.0, shape[-1]))
    # Each sums up to 288 float32 numbers in an order of its own: its rounding errors add like
    # a random walk, to sqrt(288) x 2**-24 = 1e-6 of the numbers' size (under 20 here): 2e-5.
    for training in (True, False):  # the second call uses the moving averages the first updated
        np.testing.assert_allclose(fused_layer(x, training=training),
                                   keras_layer(x, training=training), atol=2e-5)
    for a, b in zip(fused_layer.get_weights(), keras_layer.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_saveable_copy_is_float32_with_the_same_weights_and_optimizer_state(small_npz):
    (x_train, y_train), _ = mdr.load_mnist(small_npz)
    recipe = mdr.Recipe()
    model = mdr.compile_model(mdr.build_model_for(recipe, "mixed_bfloat16", fused_batchnorm=True),
                              recipe)
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    copy = model_files.saveable_copy(model, mdr.build_model_for(recipe, "float32"))
    assert layer_kinds(copy) == layer_kinds(mdr.build_model("cnn"))
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
    recipe = mdr.Recipe(arch="mlp")
    model = mdr.compile_model(mdr.build_model_for(recipe, "mixed_float16"))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.fit(x_train[:64], y_train[:64], batch_size=32, epochs=1, verbose=0)
    copy = model_files.saveable_copy(model, mdr.build_model_for(recipe, "float32"))
    assert isinstance(copy.optimizer, keras.optimizers.Adam)
    assert int(copy.optimizer.iterations.numpy()) == 2
    assert not isinstance(mdr.compile_model(mdr.build_model("mlp")).optimizer,
                          keras.optimizers.LossScaleOptimizer)


def test_precision_is_the_hardwares_fast_one_unless_told():
    """README: mixed precision by default only where the hardware is fast at it (tensor-core
    GPUs, CPUs with AVX-512 BF16 or AMX, read here from /proc/cpuinfo); the flag forces it
    either way, bfloat16 on a CPU."""
    assert hardware.choose_precision(None) in expected_precisions()
    assert hardware.choose_precision(False) == "float32"
    forced = hardware.choose_precision(True)
    assert forced == "mixed_bfloat16" if not mdr.tf.config.list_physical_devices("GPU") else \
        forced in ("mixed_bfloat16", "mixed_float16")
