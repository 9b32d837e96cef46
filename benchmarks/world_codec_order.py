"""Does one world-codec latent tell which way its object moves? Two measures on held-out one-object scenes.

1. Order: a latent group of four frames is encoded as it is and with its frames time-reversed (the same
   pictures, the opposite motion). The change of the latent, relative to its norm, is set against the change
   when the next group is encoded instead (the scale of a real step).
2. Rendering: a group's latent is decoded with itself as the decoder's previous-latent context. It is
   counted whether its object's centroid moves along the true direction over the four frames (chance 50 %).

python benchmarks/world_codec_order.py --scenes 20 --out world_codec_order.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from helios.encoders.world_codec import WorldCodec
from helios.generation.loading import model_folder
from helios.media import to_model_pixels
from helios.synthetic.evaluate import held_out_scenes
from helios.synthetic.judge import centroid
from helios.synthetic.world import CHUNK_FRAMES, HEIGHT, WIDTH, render

UNIT = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model folder or embedded name whose codec is measured")
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--out", default="world_codec_order.json")
    args = parser.parse_args()
    codec = WorldCodec.from_pretrained(model_folder(args.model) / "codec")
    scenes = [s for s in held_out_scenes(12 * args.scenes) if len(s.objects) == 1][: args.scenes]
    reversed_change, next_change, along = [], [], []
    for scene in scenes:
        video = to_model_pixels(render(scene, CHUNK_FRAMES), HEIGHT, WIDTH)
        first = video[:, :, :1]  # (a group is encoded after a first frame, as in every chunk)
        unit = np.array(UNIT[scene.objects[0].direction])
        for group in range(2, 8):
            frames = video[:, :, 4 * group - 3 : 4 * group + 1]
            following = video[:, :, 4 * group + 1 : 4 * group + 5]
            latent = codec.encode_raw(torch.cat([first, frames], 2))[:, :, 1:]
            flipped = codec.encode_raw(torch.cat([first, frames.flip(2)], 2))[:, :, 1:]
            after = codec.encode_raw(torch.cat([first, following], 2))[:, :, 1:]
            reversed_change.append(((latent - flipped).norm() / latent.norm()).item())
            next_change.append(((latent - after).norm() / latent.norm()).item())
            decoded = codec.decode_raw(torch.cat([latent, latent], 2)).clamp(-1, 1)[0, :, 1:]
            decoded = ((decoded.permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy()
            start, end = (centroid(decoded[i], scene.objects[0].color) for i in (0, -1))
            if start is not None and end is not None:
                along.append(float((np.array(end) - np.array(start)) @ unit))
    result = {
        "scenes": len(scenes),
        "groups": len(reversed_change),
        "latent_change_time_reversed": float(np.median(reversed_change)),
        "latent_change_next_group": float(np.median(next_change)),
        "decoded_alone_moves_along_true_direction": float(np.mean(np.array(along) > 0)),
        "decoded_alone_median_px_along": float(np.median(along)),
        "decoded_groups_judged": len(along),
    }
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
