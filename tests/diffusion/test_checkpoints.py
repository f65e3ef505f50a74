"""Loading the released checkpoint layouts (synthetic state dicts written here from the original naming scheme)."""

import pytest
import torch

from diffusion.checkpoints import CheckpointError, export_ddpm_state_dict, load_ddpm, load_pd

from .reference import tiny_ddpm, tiny_pd

DDPM = dict(ch=16, ch_mult=(1, 2), nrb=1, attn=(16,), res=32)
PD = dict(ch=16, ch_mult=(1, 2), nrb=1, attn=(16,), res=32, temb=32)


def _res(keys, p, cin, cout, temb_rows, temb_cols):
    keys[f"{p}.norm1.weight"] = keys[f"{p}.norm1.bias"] = (cin,)
    keys[f"{p}.conv1.weight"], keys[f"{p}.conv1.bias"] = (cout, cin, 3, 3), (cout,)
    if temb_rows:
        keys[f"{p}.temb_proj.weight"], keys[f"{p}.temb_proj.bias"] = (temb_rows, temb_cols), (temb_rows,)
    keys[f"{p}.norm2.weight"] = keys[f"{p}.norm2.bias"] = (cout,)
    keys[f"{p}.conv2.weight"], keys[f"{p}.conv2.bias"] = (cout, cout, 3, 3), (cout,)
    if cin != cout:
        keys[f"{p}.nin_shortcut.weight"], keys[f"{p}.nin_shortcut.bias"] = (cout, cin, 1, 1), (cout,)


def _attn(keys, p, c, fused):
    keys[f"{p}.norm.weight"] = keys[f"{p}.norm.bias"] = (c,)
    for n in ("qkv",) if fused else ("q", "k", "v"):
        rows = 3 * c if n == "qkv" else c
        keys[f"{p}.{n}.weight"], keys[f"{p}.{n}.bias"] = (rows, c, 1, 1), (rows,)
    keys[f"{p}.proj_out.weight"], keys[f"{p}.proj_out.bias"] = (c, c, 1, 1), (c,)


def ddpm_layout(fused, ch, ch_mult, nrb, attn, res):
    """Key -> shape of ermongroup's UNet (unfused) or SIGE's FusedUNet, and the fused temb row order."""
    keys, order, t = {}, [], 4 * ch
    keys["temb.dense.0.weight"], keys["temb.dense.0.bias"] = (t, ch), (t,)
    keys["temb.dense.1.weight"], keys["temb.dense.1.bias"] = (t, t), (t,)
    keys["conv_in.weight"], keys["conv_in.bias"] = (ch, 3, 3, 3), (ch,)
    in_mult = (1, *ch_mult)
    block_in = ch
    for i, m in enumerate(ch_mult):
        block_in = ch * in_mult[i]
        for j in range(nrb):
            _res(keys, f"down.{i}.block.{j}", block_in, ch * m, 0 if fused else ch * m, t)
            order.append((f"down.{i}.block.{j}", ch * m))
            block_in = ch * m
            if res in attn:
                _attn(keys, f"down.{i}.attn.{j}", block_in, fused)
        if i != len(ch_mult) - 1:
            keys[f"down.{i}.downsample.conv.weight"], keys[f"down.{i}.downsample.conv.bias"] = (
                (block_in, block_in, 3, 3),
                (block_in,),
            )
            res //= 2
    for n in ("block_1", "block_2"):
        _res(keys, f"mid.{n}", block_in, block_in, 0 if fused else block_in, t)
    order += [("mid.block_1", block_in), ("mid.block_2", block_in)]
    _attn(keys, "mid.attn_1", block_in, fused)
    for i in reversed(range(len(ch_mult))):
        out = ch * ch_mult[i]
        for j in range(nrb + 1):
            skip = ch * (in_mult[i] if j == nrb else ch_mult[i])
            _res(keys, f"up.{i}.block.{j}", block_in + skip, out, 0 if fused else out, t)
            order.append((f"up.{i}.block.{j}", out))
            block_in = out
            if res in attn:
                _attn(keys, f"up.{i}.attn.{j}", block_in, fused)
        if i != 0:
            keys[f"up.{i}.upsample.conv.weight"], keys[f"up.{i}.upsample.conv.bias"] = (
                (block_in, block_in, 3, 3),
                (block_in,),
            )
            res *= 2
    keys["norm_out.weight"] = keys["norm_out.bias"] = (block_in,)
    keys["conv_out.weight"], keys["conv_out.bias"] = (3, block_in, 3, 3), (3,)
    if fused:
        total = sum(c for _, c in order)
        keys["temb.dense.2.weight"], keys["temb.dense.2.bias"] = (total, t), (total,)
    return keys, order


def pd_layout(ch, ch_mult, nrb, attn, res, temb):
    keys = {}
    keys["temb.dense.0.weight"], keys["temb.dense.0.bias"] = (temb, ch), (temb,)
    keys["temb.dense.1.weight"], keys["temb.dense.1.bias"] = (temb, temb), (temb,)
    keys["conv_in.weight"], keys["conv_in.bias"] = (ch, 3, 3, 3), (ch,)
    in_mult = (1, *ch_mult)
    block_in = ch
    for i, m in enumerate(ch_mult):
        block_in = ch * in_mult[i]
        for j in range(nrb):
            _res(keys, f"down.{i}.block.{j}", block_in, ch * m, 2 * ch * m, temb)
            block_in = ch * m
            if res in attn:
                _attn(keys, f"down.{i}.attn.{j}", block_in, True)
        if i != len(ch_mult) - 1:
            _res(keys, f"down.{i}.downsample", block_in, block_in, 2 * block_in, temb)
            res //= 2
    for n in ("block_1", "block_2"):
        _res(keys, f"mid.{n}", block_in, block_in, 2 * block_in, temb)
    _attn(keys, "mid.attn_1", block_in, True)
    for i in reversed(range(len(ch_mult))):
        out = ch * ch_mult[i]
        for j in range(nrb + 1):
            skip = ch * (in_mult[i] if j == nrb else ch_mult[i])
            _res(keys, f"up.{i}.block.{j}", block_in + skip, out, 2 * out, temb)
            block_in = out
            if res in attn:
                _attn(keys, f"up.{i}.attn.{j}", block_in, True)
        if i != 0:
            _res(keys, f"up.{i}.upsample", block_in, out, 2 * out, temb)
            res *= 2
    keys["norm_out.weight"] = keys["norm_out.bias"] = (block_in,)
    keys["conv_out.weight"], keys["conv_out.bias"] = (6, block_in, 3, 3), (6,)
    return keys


def random_state(keys, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.1 for k, s in keys.items()}


def fuse(unfused, order, ch):
    """The fused layout of an unfused state dict, built the way the original FusedUNet.from_unet does."""
    out = {}
    for k, v in unfused.items():
        if ".temb_proj." in k:
            continue
        for n in ("q", "k", "v"):
            if k.endswith(f".{n}.weight") or k.endswith(f".{n}.bias"):
                break
        else:
            out[k] = v
    for p in {k.rsplit(".", 2)[0] for k in unfused if k.endswith(".q.weight")}:
        for kind in ("weight", "bias"):
            out[f"{p}.qkv.{kind}"] = torch.cat([unfused[f"{p}.{n}.{kind}"] for n in "qkv"])
    for kind in ("weight", "bias"):
        out[f"temb.dense.2.{kind}"] = torch.cat([unfused[f"{name}.temb_proj.{kind}"] for name, _ in order])
    return out


def run(model, x, t):
    with torch.no_grad():
        model.clear_cache()
        model.set_mode("full")
        return model(x, t)


def test_unfused_checkpoint_with_ema_loads_by_its_keys(tmp_path):
    keys, _ = ddpm_layout(False, **DDPM)
    raw, ema = random_state(keys, 0), random_state(keys, 1)
    torch.save({"model": raw, "ema": ema}, tmp_path / "unfused.pth")
    model = tiny_ddpm()
    assert load_ddpm(model, tmp_path / "unfused.pth") == "unfused"
    for n in "qkv":
        torch.testing.assert_close(getattr(model.mid.attn_1, n).weight, ema[f"mid.attn_1.{n}.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.up[1].block[0].temb_proj.bias, ema["up.1.block.0.temb_proj.bias"], rtol=0, atol=0)
    model2 = tiny_ddpm()
    load_ddpm(model2, tmp_path / "unfused.pth", use_ema=False)
    torch.testing.assert_close(model2.conv_in.weight, raw["conv_in.weight"], rtol=0, atol=0)


def test_fused_and_unfused_checkpoints_give_the_same_network(tmp_path):
    keys, order = ddpm_layout(False, **DDPM)
    unfused = random_state(keys)
    fused = fuse(unfused, order, DDPM["ch"])
    assert set(fused) == set(ddpm_layout(True, **DDPM)[0])
    torch.save({"model": fused}, tmp_path / "fused.pth")
    a, b = tiny_ddpm(), tiny_ddpm()
    load_ddpm(a, {"model": unfused})
    assert load_ddpm(b, tmp_path / "fused.pth") == "fused"
    x, t = torch.randn(1, 3, 32, 32), torch.full((1,), 123.0)
    torch.testing.assert_close(run(a, x, t), run(b, x, t), rtol=0, atol=0)
    for layout in ("fused", "unfused"):
        exported = export_ddpm_state_dict(b, layout)
        assert {k: tuple(v.shape) for k, v in exported.items()} == ddpm_layout(layout == "fused", **DDPM)[0]
        c = tiny_ddpm()
        load_ddpm(c, exported)
        torch.testing.assert_close(run(c, x, t), run(a, x, t), rtol=0, atol=0)


def test_ermongroup_list_checkpoint_with_dataparallel_prefix(tmp_path):
    keys, _ = ddpm_layout(False, **DDPM)
    sd = {f"module.{k}": v for k, v in random_state(keys).items()}
    torch.save([sd, {}, 3, 1000, sd], tmp_path / "ckpt.pth")
    load_ddpm(tiny_ddpm(), tmp_path / "ckpt.pth")


def test_missing_and_mis_shaped_keys_are_named(tmp_path):
    keys, _ = ddpm_layout(True, **DDPM)
    sd = random_state(keys)
    del sd["down.0.block.0.conv2.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: down\.0\.block\.0\.conv2\.weight"):
        load_ddpm(tiny_ddpm(), {"model": sd})
    other, _ = ddpm_layout(True, ch=16, ch_mult=(1, 4), nrb=1, attn=(16,), res=32)
    with pytest.raises(CheckpointError, match="temb.dense.2 projects to"):
        load_ddpm(tiny_ddpm(), {"model": random_state(other)})
    wide, _ = ddpm_layout(False, ch=32, ch_mult=(1, 2), nrb=1, attn=(16,), res=32)
    with pytest.raises(
        CheckpointError, match=r"shape mismatches: .*checkpoint \(32, 3, 3, 3\) vs model \(16, 3, 3, 3\)"
    ):
        load_ddpm(tiny_ddpm(), {"model": random_state(wide)})


def test_truncated_file_is_a_clear_error(tmp_path):
    keys, _ = ddpm_layout(True, **DDPM)
    torch.save({"model": random_state(keys)}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*cut.pth.*md5"):
        load_ddpm(tiny_ddpm(), tmp_path / "cut.pth")
    with pytest.raises(FileNotFoundError):
        load_ddpm(tiny_ddpm(), tmp_path / "absent.pth")


def test_pd_checkpoint_loads_and_other_resolutions_are_refused(tmp_path):
    keys = pd_layout(**PD)
    sd = random_state(keys)
    torch.save({"model": sd}, tmp_path / "pd.pth")
    model = tiny_pd()
    load_pd(model, tmp_path / "pd.pth")
    split = {}  # the checkpoint's fused qkv convs are the model's q, k, v convs
    for k, shape in keys.items():
        if ".qkv." in k:
            split.update({k.replace(".qkv.", f".{n}."): (shape[0] // 3, *shape[1:]) for n in "qkv"})
        else:
            split[k] = shape
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == split
    torch.testing.assert_close(model.mid.attn_1.k.weight, sd["mid.attn_1.qkv.weight"].chunk(3)[1], rtol=0, atol=0)
    torch.testing.assert_close(model.down[0].downsample.temb_proj.weight, sd["down.0.downsample.temb_proj.weight"])
    deeper = tiny_pd(ch_mult=(1, 1, 2))  # a "256" variant of the tiny config: one level more
    with pytest.raises(CheckpointError, match=r"missing keys: down\.1\.downsample.*shape mismatches"):
        load_pd(deeper, tmp_path / "pd.pth")


def test_pretrained_weights_that_cannot_be_fetched_say_what_to_download(tmp_path, monkeypatch):
    from sigebench.weights import resolve_weights

    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("SIGE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SIGE_DATA_MIRROR", str(tmp_path / "mirror"))
    item = {"manifest": "diffusion_checkpoints", "item": "church128-pd-unet.pth"}
    with pytest.raises(FileNotFoundError, match=r"(?s)church128-pd-unet\.pth.*cs\.cmu\.edu.*8a2690eb.*weights=PATH"):
        resolve_weights("pretrained", item)
    with pytest.raises(FileNotFoundError, match="no released checkpoint"):
        resolve_weights("pretrained", None)
    with pytest.raises(FileNotFoundError, match="weights='nope.pth': no such file"):
        resolve_weights("nope.pth", item)
    assert resolve_weights(None, item) is None and resolve_weights("random", item) is None
