"""PyTorch definitions of DiffBIR's stage-1 restoration networks, for bench_torch.py.

Follows XPixelGroup/DiffBIR at commit 3f8b5304245ba0ffd6f1995e51c27c3c72d7618f
(diffbir/model/swinir.py, bsrnet.py and scunet.py): the same layers, applied in the same
order, under the same attribute names, so `state_dict()` has the keys and shapes of the
official checkpoints (general_swinir_v1.ckpt, BSRNet.pth, scunet_color_real_psnr.pth) and
`load_state_dict` would take them. Written for timing with random weights; only torch is
needed (the original uses timm's helpers and einops, replaced here by a few lines each).

- SwinIR: DiffBIR's variant (PixelUnshuffle stem, "nearest+conv" head); its configuration is
  configs/inference/swinir.yaml (`SWINIR_DIFFBIR`).
- RRDBNet: ESRGAN's generator as BSRGAN ships it ("BSRNet", x4; configs/inference/bsrnet.yaml).
- SCUNet: Swin-Conv-UNet (configs/inference/scunet.yaml: four blocks per stage, width 64). The
  original hard-codes the head width (32) and the window (8); here they are arguments with those
  defaults, so the benchmark's tiny configuration can shrink them.

Left out, as nothing here uses them: FLOP counters, gradient checkpointing, dropout (rate 0 in
every DiffBIR configuration), Swin's unused PatchMerging, the training hyper-parameters the
original SwinIR constructor accepts, and the diagnostic prints of the originals.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SwinIR", "RRDBNet", "SCUNet", "SWINIR_DIFFBIR", "BSRNET", "SCUNET_PSNR"]

# The commit of XPixelGroup/DiffBIR these definitions follow.
DIFFBIR_COMMIT = "3f8b5304245ba0ffd6f1995e51c27c3c72d7618f"

# configs/inference/swinir.yaml
SWINIR_DIFFBIR = dict(
    img_size=64,
    patch_size=1,
    in_chans=3,
    embed_dim=180,
    depths=[6] * 8,
    num_heads=[6] * 8,
    window_size=8,
    mlp_ratio=2,
    sf=8,
    img_range=1.0,
    upsampler="nearest+conv",
    resi_connection="1conv",
    unshuffle=True,
    unshuffle_scale=8,
)
# configs/inference/bsrnet.yaml
BSRNET = dict(in_nc=3, out_nc=3, nf=64, nb=23, gc=32, sf=4)
# configs/inference/scunet.yaml
SCUNET_PSNR = dict(in_nc=3, config=[4] * 7, dim=64)


# --- small helpers (timm's, reduced to what is used) -----------------------------------------

def _pair(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def _trunc_normal_(t, std=0.02):
    # timm's trunc_normal_ defaults: cut at +-2 (absolute, i.e. 100 std at std 0.02).
    return nn.init.trunc_normal_(t, std=std, a=-2.0, b=2.0)


class DropPath(nn.Module):
    """Stochastic depth per sample: identity in eval mode (all the benchmark uses)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def _drop_path(p):
    return DropPath(p) if p > 0.0 else nn.Identity()


# --- SwinIR ----------------------------------------------------------------------------------

def window_partition(x, ws):
    """[B, H, W, C] -> [B * H/ws * W/ws, ws, ws, C]."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def window_reverse(windows, ws, h, w):
    """Inverse of `window_partition`: [B * nW, ws, ws, C] -> [B, H, W, C]."""
    b = int(windows.shape[0] / (h * w / ws / ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias."""

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None):
        super().__init__()
        self.dim = dim
        self.window_size = window_size  # (Wh, Ww)
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        wh, ww = window_size
        # One bias per head and relative offset: (2Wh-1)(2Ww-1) rows.
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads)
        )
        # Row of the table for each (query, key) pair of a window; a persistent buffer in the
        # original, so it is one here too (checkpoints carry it).
        coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij"))
        coords = coords.flatten(1)  # [2, Wh*Ww]
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += wh - 1
        rel[:, :, 1] += ww - 1
        rel[:, :, 0] *= 2 * ww - 1
        self.register_buffer("relative_position_index", rel.sum(-1))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        _trunc_normal_(self.relative_position_bias_table)

    def forward(self, x, mask=None):
        """x: [B*nW, N, C]; mask: [nW, N, N] of 0 / -100, or None."""
        bn, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(bn, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, -1).permute(2, 0, 1).contiguous()  # [heads, N, N]
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bn // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, n, n)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(bn, n, c)
        return self.proj(x)


class SwinTransformerBlock(nn.Module):
    def __init__(
        self,
        dim,
        input_resolution,
        num_heads,
        window_size=7,
        shift_size=0,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_path=0.0,
    ):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.shift_size = shift_size
        if min(input_resolution) <= window_size:
            # The window covers the whole (training) input: no partition, no shift.
            self.shift_size = 0
            self.window_size = min(input_resolution)
        assert 0 <= self.shift_size < self.window_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim, _pair(self.window_size), num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale
        )
        self.drop_path = _drop_path(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # The shift mask at the training resolution is a persistent buffer (None, and so not
        # in the state dict, for unshifted blocks); other sizes compute theirs per call.
        mask = self.calculate_mask(input_resolution) if self.shift_size > 0 else None
        self.register_buffer("attn_mask", mask)

    def calculate_mask(self, x_size):
        """Additive mask [nW, ws*ws, ws*ws] keeping the shifted windows' regions apart."""
        h, w = x_size
        ws, shift = self.window_size, self.shift_size
        region = torch.zeros((1, h, w, 1))
        spans = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
        label = 0
        for hs in spans:
            for wsl in spans:
                region[:, hs, wsl, :] = label
                label += 1
        windows = window_partition(region, ws).view(-1, ws * ws)
        mask = windows.unsqueeze(1) - windows.unsqueeze(2)
        return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)

    def forward(self, x, x_size):
        h, w = x_size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = window_partition(x, self.window_size)
        windows = windows.view(-1, self.window_size * self.window_size, c)
        if self.input_resolution == x_size:
            mask = self.attn_mask
        else:
            # As the original: computed for unshifted blocks too (then all zeros, still added).
            mask = self.calculate_mask(x_size).to(x.device)
        windows = self.attn(windows, mask=mask)
        windows = windows.view(-1, self.window_size, self.window_size, c)
        x = window_reverse(windows, self.window_size, h, w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + self.drop_path(x.view(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicLayer(nn.Module):
    """`depth` Swin blocks, every other one shifted by half a window."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio,
                 qkv_bias, qk_scale, drop_path):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim,
                input_resolution,
                num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop_path=drop_path[i],
            )
            for i in range(depth)
        )

    def forward(self, x, x_size):
        for block in self.blocks:
            x = block(x, x_size)
        return x


def _tokens(x):
    """[B, C, H, W] -> [B, H*W, C] (SwinIR's PatchEmbed without its norm)."""
    return x.flatten(2).transpose(1, 2)


def _image(x, x_size):
    """[B, H*W, C] -> [B, C, H, W] (SwinIR's PatchUnEmbed)."""
    b, _, c = x.shape
    return x.transpose(1, 2).view(b, c, x_size[0], x_size[1])


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, a conv on the image, a skip."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio,
                 qkv_bias, qk_scale, drop_path, resi_connection):
        super().__init__()
        self.residual_group = BasicLayer(
            dim, input_resolution, depth, num_heads, window_size, mlp_ratio, qkv_bias,
            qk_scale, drop_path,
        )
        self.conv = _resi_conv(dim, resi_connection)

    def forward(self, x, x_size):
        y = self.residual_group(x, x_size)
        return _tokens(self.conv(_image(y, x_size))) + x


def _resi_conv(dim, kind):
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if kind == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1),
        )
    raise ValueError(f"resi_connection {kind!r}")


class PatchEmbed(nn.Module):
    """Flattens the image to tokens, then the optional LayerNorm (`patch_embed.norm`)."""

    def __init__(self, dim, norm):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x):
        x = _tokens(x)
        return self.norm(x) if self.norm is not None else x


class SwinIR(nn.Module):
    """SwinIR (Liang et al. 2021) in DiffBIR's variant: with `unshuffle`, the input is
    pixel-unshuffled by `sf` before the first conv, so the trunk runs at 1/sf resolution and a
    x`sf` head brings it back to the input size.

    Input `[B, in_chans, H, W]` in [0, 1]; output `[B, in_chans, H', W']` cropped to
    `[:H*sf, :W*sf]` (the input size for DiffBIR's configuration, whose H and W must then be
    multiples of sf * window_size = 64)."""

    def __init__(
        self,
        img_size=64,
        patch_size=1,
        in_chans=3,
        embed_dim=96,
        depths=(6, 6, 6, 6),
        num_heads=(6, 6, 6, 6),
        window_size=7,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_path_rate=0.1,
        ape=False,
        patch_norm=True,
        sf=4,
        img_range=1.0,
        upsampler="",
        resi_connection="1conv",
        unshuffle=False,
        unshuffle_scale=None,
    ):
        super().__init__()
        num_in = in_chans * unshuffle_scale**2 if unshuffle else in_chans
        num_feat = 64
        self.img_range = img_range
        mean = (0.4488, 0.4371, 0.4040) if in_chans == 3 else (0.0,)
        # Not in the state dict (a plain attribute in the original).
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.upscale = sf
        self.upsampler = upsampler
        self.window_size = window_size

        # 1. Shallow features.
        if unshuffle:
            assert unshuffle_scale is not None
            self.conv_first = nn.Sequential(
                nn.PixelUnshuffle(sf), nn.Conv2d(num_in, embed_dim, 3, 1, 1)
            )
        else:
            self.conv_first = nn.Conv2d(num_in, embed_dim, 3, 1, 1)

        # 2. Deep features: residual Swin groups at the training resolution `img_size`.
        resolution = tuple(s // p for s, p in zip(_pair(img_size), _pair(patch_size)))
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        self.ape = ape
        if ape:
            self.absolute_pos_embed = nn.Parameter(
                torch.zeros(1, resolution[0] * resolution[1], embed_dim)
            )
            _trunc_normal_(self.absolute_pos_embed)
        # Stochastic depth rising linearly over all blocks (identity in eval mode).
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths))]
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:i])
            self.layers.append(
                RSTB(embed_dim, resolution, depth, heads, window_size, mlp_ratio, qkv_bias,
                     qk_scale, dpr[start:start + depth], resi_connection)
            )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _resi_conv(embed_dim, resi_connection)

        # 3. Reconstruction.
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
            steps = []
            if sf & (sf - 1) == 0:
                for _ in range(int(math.log2(sf))):
                    steps += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
            elif sf == 3:
                steps += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
            else:
                raise ValueError(f"pixelshuffle does not support sf = {sf}")
            self.upsample = nn.Sequential(*steps)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(
                nn.Conv2d(embed_dim, sf**2 * in_chans, 3, 1, 1), nn.PixelShuffle(sf)
            )
        elif upsampler == "nearest+conv":
            # LeakyReLU's default slope (0.01) here, 0.2 after the upsampling convs.
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            if sf in (4, 8):
                self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            if sf == 8:
                self.conv_up3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        else:
            # Same-size restoration with a global residual.
            self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, 1, 1)

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            _trunc_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x):
        x_size = (x.shape[2], x.shape[3])
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        for layer in self.layers:
            x = layer(x, x_size)
        return _image(self.norm(x), x_size)

    def forward(self, x):
        h, w = x.shape[2:]
        # Reflect-pad bottom/right to a multiple of the window (of the input, as the original).
        ws = self.window_size
        x = F.pad(x, (0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws), "reflect")
        mean = self.mean.type_as(x)
        x = (x - mean) * self.img_range
        if self.upsampler == "pixelshuffle":
            x = self.conv_first(x)
            x = self.conv_after_body(self.forward_features(x)) + x
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        elif self.upsampler == "pixelshuffledirect":
            x = self.conv_first(x)
            x = self.upsample(self.conv_after_body(self.forward_features(x)) + x)
        elif self.upsampler == "nearest+conv":
            x = self.conv_first(x)
            x = self.conv_after_body(self.forward_features(x)) + x
            x = self.conv_before_upsample(x)
            ups = [self.conv_up1]
            if self.upscale in (4, 8):
                ups.append(self.conv_up2)
            if self.upscale == 8:
                ups.append(self.conv_up3)
            for conv in ups:
                x = self.lrelu(conv(F.interpolate(x, scale_factor=2, mode="nearest")))
            x = self.conv_last(self.lrelu(self.conv_hr(x)))
        else:
            first = self.conv_first(x)
            res = self.conv_after_body(self.forward_features(first)) + first
            x = x + self.conv_last(res)
        x = x / self.img_range + mean
        return x[:, :, : h * self.upscale, : w * self.upscale]


# --- RRDBNet (BSRNet) ------------------------------------------------------------------------

def _scaled_kaiming_(convs, scale):
    """Kaiming-normal (fan in) weights times `scale`, zero biases: ESRGAN's init of the dense
    blocks, which keeps 23 residual blocks of random weights from blowing up."""
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
        conv.weight.data.mul_(scale)
        if conv.bias is not None:
            conv.bias.data.zero_()


class ResidualDenseBlock_5C(nn.Module):
    """Five densely connected 3x3 convs (each sees the input and all earlier outputs)."""

    def __init__(self, nf=64, gc=32, bias=True):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1, bias=bias)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1, bias=bias)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1, bias=bias)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1, bias=bias)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1, bias=bias)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        _scaled_kaiming_([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual in Residual Dense Block: three dense blocks and a scaled skip."""

    def __init__(self, nf, gc=32):
        super().__init__()
        self.RDB1 = ResidualDenseBlock_5C(nf, gc)
        self.RDB2 = ResidualDenseBlock_5C(nf, gc)
        self.RDB3 = ResidualDenseBlock_5C(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator: `nb` RRDBs at input resolution, then nearest x2 + conv steps (two
    for sf = 4, one otherwise). `[B, in_nc, H, W]` -> `[B, out_nc, H*sf, W*sf]`."""

    def __init__(self, in_nc=3, out_nc=3, nf=64, nb=23, gc=32, sf=4):
        super().__init__()
        self.sf = sf
        self.conv_first = nn.Conv2d(in_nc, nf, 3, 1, 1, bias=True)
        self.RRDB_trunk = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.upconv1 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        if sf == 4:
            self.upconv2 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, 1, 1, bias=True)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.RRDB_trunk(fea))
        fea = self.lrelu(self.upconv1(F.interpolate(fea, scale_factor=2, mode="nearest")))
        if self.sf == 4:
            fea = self.lrelu(self.upconv2(F.interpolate(fea, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.HRconv(fea)))


# --- SCUNet ----------------------------------------------------------------------------------

class WMSA(nn.Module):
    """(Shifted) window multi-head self-attention of SCUNet, on `[B, H, W, C]` images."""

    def __init__(self, input_dim, output_dim, head_dim, window_size, type):
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.n_heads = input_dim // head_dim
        self.window_size = window_size
        self.type = type
        self.embedding_layer = nn.Linear(input_dim, 3 * input_dim, bias=True)
        # Stored as [heads, 2ws-1, 2ws-1] (the original draws it as [(2ws-1)^2, heads] and
        # rearranges; the distribution is the same).
        span = 2 * window_size - 1
        self.relative_position_params = nn.Parameter(torch.zeros(self.n_heads, span, span))
        _trunc_normal_(self.relative_position_params)
        self.linear = nn.Linear(input_dim, output_dim)
        # Offset (+ ws - 1) between every pair of positions of a window, per axis: the
        # original rebuilds it on each call; kept here, out of the state dict.
        pos = torch.stack(
            torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"),
            -1,
        ).view(-1, 2)
        relation = pos[:, None, :] - pos[None, :, :] + window_size - 1
        self.register_buffer("relation", relation, persistent=False)

    def generate_mask(self, h, w, p, shift):
        """Boolean mask [1, 1, h*w, p*p, p*p], True where the cyclic shift brought together
        pixels that were not neighbours: only the last window row and column have any."""
        mask = torch.zeros(h, w, p, p, p, p, dtype=torch.bool,
                           device=self.relative_position_params.device)
        if self.type == "W":
            return mask
        s = p - shift
        mask[-1, :, :s, :, s:, :] = True
        mask[-1, :, s:, :, :s, :] = True
        mask[:, -1, :, :s, :, s:] = True
        mask[:, -1, :, s:, :, :s] = True
        return mask.reshape(1, 1, h * w, p * p, p * p)

    def relative_embedding(self):
        """[heads, ws*ws, ws*ws] bias of each (query, key) pair of a window."""
        return self.relative_position_params[:, self.relation[:, :, 0], self.relation[:, :, 1]]

    def forward(self, x):
        p = self.window_size
        if self.type != "W":
            x = torch.roll(x, shifts=(-(p // 2), -(p // 2)), dims=(1, 2))
        b, h, w, c = x.shape
        nh, nw = h // p, w // p
        # b (w1 p1) (w2 p2) c -> b (w1 w2) (p1 p2) c
        x = x.view(b, nh, p, nw, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * nw, p * p, c)
        qkv = self.embedding_layer(x)
        # b nw np (3h c) -> 3h b nw np c, then q, k, v of [heads, b, nw, np, head_dim]
        qkv = qkv.view(b, nh * nw, p * p, 3 * self.n_heads, self.head_dim).permute(3, 0, 1, 2, 4)
        q, k, v = qkv.chunk(3, dim=0)
        sim = torch.einsum("hbwpc,hbwqc->hbwpq", q, k) * self.scale
        sim = sim + self.relative_embedding()[:, None, None]
        if self.type != "W":
            mask = self.generate_mask(nh, nw, p, shift=p // 2)
            sim = sim.masked_fill_(mask, float("-inf"))
        probs = F.softmax(sim, dim=-1)
        out = torch.einsum("hbwij,hbwjc->hbwic", probs, v)
        # h b w p c -> b w p (h c)
        out = out.permute(1, 2, 3, 0, 4).reshape(b, nh * nw, p * p, self.n_heads * self.head_dim)
        out = self.linear(out)
        # b (w1 w2) (p1 p2) c -> b (w1 p1) (w2 p2) c
        c = out.shape[-1]
        out = out.view(b, nh, nw, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if self.type != "W":
            out = torch.roll(out, shifts=(p // 2, p // 2), dims=(1, 2))
        return out


class Block(nn.Module):
    """Swin transformer block on `[B, H, W, C]`; shifted ('SW') unless the training
    resolution fits in one window."""

    def __init__(self, input_dim, output_dim, head_dim, window_size, drop_path, type="W",
                 input_resolution=None):
        super().__init__()
        assert type in ("W", "SW")
        self.type = "W" if input_resolution <= window_size else type
        self.ln1 = nn.LayerNorm(input_dim)
        self.msa = WMSA(input_dim, input_dim, head_dim, window_size, self.type)
        self.drop_path = _drop_path(drop_path)
        self.ln2 = nn.LayerNorm(input_dim)
        self.mlp = nn.Sequential(
            nn.Linear(input_dim, 4 * input_dim), nn.GELU(), nn.Linear(4 * input_dim, output_dim)
        )

    def forward(self, x):
        x = x + self.drop_path(self.msa(self.ln1(x)))
        return x + self.drop_path(self.mlp(self.ln2(x)))


class ConvTransBlock(nn.Module):
    """Splits the channels (after a 1x1 conv) into a residual conv half and a Swin half, then
    merges them with another 1x1 conv and a skip."""

    def __init__(self, conv_dim, trans_dim, head_dim, window_size, drop_path, type="W",
                 input_resolution=None):
        super().__init__()
        self.conv_dim = conv_dim
        self.trans_dim = trans_dim
        assert type in ("W", "SW")
        if input_resolution <= window_size:
            type = "W"
        self.trans_block = Block(trans_dim, trans_dim, head_dim, window_size, drop_path, type,
                                 input_resolution)
        width = conv_dim + trans_dim
        self.conv1_1 = nn.Conv2d(width, width, 1, 1, 0, bias=True)
        self.conv1_2 = nn.Conv2d(width, width, 1, 1, 0, bias=True)
        self.conv_block = nn.Sequential(
            nn.Conv2d(conv_dim, conv_dim, 3, 1, 1, bias=False),
            nn.ReLU(True),
            nn.Conv2d(conv_dim, conv_dim, 3, 1, 1, bias=False),
        )

    def forward(self, x):
        conv_x, trans_x = torch.split(self.conv1_1(x), (self.conv_dim, self.trans_dim), dim=1)
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv1_2(torch.cat((conv_x, trans_x), dim=1))


class SCUNet(nn.Module):
    """Swin-Conv-UNet (Zhang et al. 2023): three 2x2-stride downsamplings, a body, three 2x2
    transposed-conv upsamplings with additive skips; `config` gives the blocks of the seven
    stages. Pads the input (replicating) to a multiple of 64 and crops back:
    `[B, in_nc, H, W]` -> `[B, in_nc, H, W]`."""

    def __init__(self, in_nc=3, config=(2, 2, 2, 2, 2, 2, 2), dim=64, drop_path_rate=0.0,
                 input_resolution=256, head_dim=32, window_size=8):
        super().__init__()
        self.config = config
        self.dim = dim
        self.head_dim = head_dim
        self.window_size = window_size
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(config))]
        stage_start = [sum(config[:i]) for i in range(7)]

        def blocks(stage, half, resolution):
            # Alternating regular and shifted windows, `half` conv + `half` Swin channels.
            return [
                ConvTransBlock(half, half, head_dim, window_size, dpr[stage_start[stage] + i],
                               "W" if i % 2 == 0 else "SW", resolution)
                for i in range(config[stage])
            ]

        def down(cin, cout):
            return nn.Conv2d(cin, cout, 2, 2, 0, bias=False)

        def up(cin, cout):
            return nn.ConvTranspose2d(cin, cout, 2, 2, 0, bias=False)

        r, d = input_resolution, dim
        self.m_head = nn.Sequential(nn.Conv2d(in_nc, d, 3, 1, 1, bias=False))
        self.m_down1 = nn.Sequential(*blocks(0, d // 2, r), down(d, 2 * d))
        self.m_down2 = nn.Sequential(*blocks(1, d, r // 2), down(2 * d, 4 * d))
        self.m_down3 = nn.Sequential(*blocks(2, 2 * d, r // 4), down(4 * d, 8 * d))
        self.m_body = nn.Sequential(*blocks(3, 4 * d, r // 8))
        self.m_up3 = nn.Sequential(up(8 * d, 4 * d), *blocks(4, 2 * d, r // 4))
        self.m_up2 = nn.Sequential(up(4 * d, 2 * d), *blocks(5, d, r // 2))
        self.m_up1 = nn.Sequential(up(2 * d, d), *blocks(6, d // 2, r))
        self.m_tail = nn.Sequential(nn.Conv2d(d, in_nc, 3, 1, 1, bias=False))

    def forward(self, x0):
        h, w = x0.shape[-2:]
        pad_bottom = math.ceil(h / 64) * 64 - h
        pad_right = math.ceil(w / 64) * 64 - w
        x0 = F.pad(x0, (0, pad_right, 0, pad_bottom), mode="replicate")
        x1 = self.m_head(x0)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        x = self.m_body(x4)
        x = self.m_up3(x + x4)
        x = self.m_up2(x + x3)
        x = self.m_up1(x + x2)
        x = self.m_tail(x + x1)
        return x[..., :h, :w]
