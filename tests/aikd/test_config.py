import pytest

from aikd.config import AIKD_PRESETS, ConfigError, TrainConfig, all_keys


def test_flat_nested_and_overrides_agree():
    a = TrainConfig.from_dict({"method": {"name": "aikd", "omega": 0.05}, "optim": {"lr": 0.02}})
    b = TrainConfig.from_dict({"method.name": "aikd"}, ["method.omega=0.05", "optim.lr=0.02"])
    assert a.to_dict() == b.to_dict()
    assert a.method.omega == 0.05 and a.optim.lr == 0.02


def test_round_trip_through_flat_dict():
    c = TrainConfig.from_dict({"method.name": "aikd"}, ["critic.betas=0.9,0.999", "optim.milestones=3,6"]).resolved()
    assert TrainConfig.from_dict(c.to_dict()).to_dict() == c.to_dict()
    assert c.critic.betas == (0.9, 0.999) and c.optim.milestones == (3, 6)


@pytest.mark.parametrize("item, words", [
    ("method.omga=0.1", ["method.omga", "method.omega"]),
    ("method.tau_g=-1", ["method.tau_g", "> 0"]),
    ("method.omega=20", ["method.omega", "[0, 10]"]),
    ("method.alpha_g=abc", ["method.alpha_g", "float"]),
    ("method.name=foo", ["method.name", "aikd_no_adv"]),
    ("epochs=2.5", ["epochs", "int"]),
    ("critic.norm=group", ["critic.norm", "layernorm"]),
    ("optim.nesterov=maybe", ["optim.nesterov", "bool"]),
    ("nokey", ["key=value"]),
])
def test_bad_values_name_the_key_and_what_is_allowed(item, words):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({}, [item])
    for w in words:
        assert w in str(e.value)


def test_weights_must_fit_the_simplex():
    with pytest.raises(ConfigError, match="alpha_g \\+ method.alpha_p"):
        TrainConfig.from_dict({"method.name": "aikd", "method.alpha_g": 0.7, "method.alpha_p": 0.4})


def test_mixing_rejected_where_a_sample_index_is_needed():
    for extra in ({"method.name": "pskd"}, {"method.name": "cskd"},
                  {"method.name": "aikd", "method.prev_mode": "cache"}):
        with pytest.raises(ConfigError, match="data.augment=mixup"):
            TrainConfig.from_dict({"data.augment": "mixup", **extra})
    TrainConfig.from_dict({"data.augment": "mixup", "method.name": "aikd"})  # snapshot mode is fine


def test_teacher_seed_must_differ_from_student_seed():
    with pytest.raises(ConfigError, match="teacher.seed"):
        TrainConfig.from_dict({"method.name": "aikd", "seed": 1000})


def test_recipe_and_presets_resolve():
    r = TrainConfig.from_dict({"method.name": "aikd", "data.dataset": "cifar100"}).resolved()
    assert (r.epochs, r.optim.milestones, r.optim.nesterov, r.optim.weight_decay) == (300, (150, 225), True, 5e-4)
    assert (r.method.alpha_g, r.method.alpha_p, r.method.omega) == (0.1, 0.3, 0.1)
    f = TrainConfig.from_dict({"method.name": "frskd", "data.dataset": "cifar100"}).resolved()
    assert (f.epochs, f.optim.milestones, f.optim.nesterov, f.optim.weight_decay) == (200, (100, 150), False, 1e-4)
    assert (f.method.alpha, f.method.beta) == (2.0, 100.0)
    assert TrainConfig.from_dict({"method.name": "frskd", "data.dataset": "mit67"}).resolved().method.beta == 200
    c = TrainConfig.from_dict({"method.name": "cskd", "data.dataset": "cub200"}).resolved()
    assert (c.method.temperature, c.method.lambda_cls, c.data.batch_size) == (4.0, 3.0, 32)
    t = TrainConfig.from_dict({"method.name": "tfkd", "model.family": "densenet121",
                               "data.dataset": "cifar100"}).resolved()
    assert (t.model.name, t.model.stem, t.method.alpha, t.method.temperature) == ("densenet121", "cifar", 0.9, 20.0)


def test_explicit_values_win_over_presets():
    r = TrainConfig.from_dict({"method.name": "aikd", "method.omega": 0.0, "optim.lr": 0.05, "epochs": 7}).resolved()
    assert (r.method.omega, r.optim.lr, r.epochs) == (0.0, 0.05, 7)


def test_presets_of_the_ablation_variants():
    for name, (g, p, w) in AIKD_PRESETS.items():
        r = TrainConfig.from_dict({"method.name": name}).resolved()
        assert (r.method.alpha_g, r.method.alpha_p, r.method.omega) == (g, p, w)
        assert abs((1 - g - p) + g + p - 1) < 1e-12
    assert AIKD_PRESETS["aikd_only_progressive"] == (0.0, 0.3, 0.0)
    assert AIKD_PRESETS["aikd_only_guide"] == (0.1, 0.0, 0.0)


def test_every_key_is_settable():
    keys = all_keys()
    assert "method.omega" in keys and "critic.fc1" in keys and "epochs" in keys


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "tinyimagenet"])
def test_coarse_sets_default_to_each_papers_backbone(dataset):
    """SPEC 7.9: PreAct ResNet-18 (7.1) for AI-KD, CS-KD, PS-KD, TF-KD and the baseline; FRSKD's own post-activation
    ResNet-18 with a CIFAR stem (7.5)."""
    for method in ("aikd", "aikd_no_adv", "aikd_only_progressive", "aikd_only_guide", "cskd", "pskd", "tfkd",
                   "baseline"):
        r = TrainConfig.from_dict({"data.dataset": dataset, "method.name": method}).resolved()
        assert (r.model.name, r.model.stem) == ("preact_resnet18", "cifar"), method
    r = TrainConfig.from_dict({"data.dataset": dataset, "method.name": "frskd"}).resolved()
    assert (r.model.name, r.model.stem) == ("resnet18_cifar", "cifar")


@pytest.mark.parametrize("dataset", ["cub200", "dogs", "mit67", "aircraft", "stanford40"])
def test_fine_grained_sets_default_to_the_224_resnet18(dataset):
    for method in ("aikd", "cskd", "pskd", "tfkd", "baseline", "frskd"):
        r = TrainConfig.from_dict({"data.dataset": dataset, "method.name": method}).resolved()
        assert (r.model.name, r.model.stem, r.data.batch_size) == ("resnet18", "imagenet", 32), method


def test_offline_sets_keep_the_small_cnn_and_an_explicit_model_always_wins():
    for dataset in ("digits", "synthetic"):
        assert TrainConfig.from_dict({"data.dataset": dataset, "method.name": "aikd"}).resolved().model.name \
            == "small_cnn"
    r = TrainConfig.from_dict({"data.dataset": "cifar100", "method.name": "aikd", "model.name": "wrn16_2"}).resolved()
    assert r.model.name == "wrn16_2"
    # also over a family (e.g. a `compare` cell under --model)
    r = TrainConfig.from_dict({"data.dataset": "cub200", "method.name": "aikd", "model.family": "densenet121",
                               "model.name": "small_cnn"}).resolved()
    assert r.model.name == "small_cnn"
    r = TrainConfig.from_dict({"data.dataset": "cub200", "method.name": "aikd", "model.family": "densenet121"})
    assert (r.resolved().model.name, r.resolved().model.stem) == ("densenet121", "imagenet")
    assert r.resolved().resolved().to_dict() == r.resolved().to_dict()  # resolving is idempotent


def test_stanford40_is_accepted_like_the_other_image_folder_sets():
    r = TrainConfig.from_dict({"data.dataset": "stanford40", "method.name": "frskd"}).resolved()
    assert (r.method.alpha, r.method.beta) == (1.0, 200.0)  # FRSKD's fine-grained preset (SPEC 4.3)
    c = TrainConfig.from_dict({"data.dataset": "stanford40", "method.name": "cskd"}).resolved()
    assert c.method.lambda_cls == 3.0 and c.data.mix_alpha == 1.0
    f = TrainConfig.from_dict({"data.dataset": "stanford40", "method.name": "frskd", "data.augment": "mixup"})
    assert f.resolved().data.mix_alpha == 0.3  # FRSKD's fine-grained mixup alpha
