// Package recorder turns the webcam video that peers choose to send a
// recorder bot into training tensors: frames at a fixed rate and size, with
// capture times and who sent them, in files that numpy, PyTorch, TensorFlow
// and JAX load with no extra code.
//
// The pipeline for each received track:
//
//	RTP ─► samplebuilder ─► gap check (PLI, wait for key frame) ─► libvpx decode (VP8, VP9)
//	    ─► Sampler (fixed fps by RTP capture time) ─► Scaler (I420 → RGB, resize, fit)
//	    ─► Queue (bounded, drops oldest) ─► Clip ─► shard + manifest + contact sheet
//
// Output, one directory per room (see OpenOutput): Config.Out itself with
// one room, Out/<room> for each of several:
//
//	<room>-000000.tar        one clip per shard, WebDataset style:
//	                           KEY.frames.npy  uint8 [T,H,W,3] RGB, NumPy v1.0, C order
//	                           KEY.ts.npy      int64 [T] capture times, Unix µs
//	                           KEY.audio.npy   float32 [S] 16 kHz mono, only when the peer sent audio
//	                           KEY.json        ClipMeta (room, peer, user, codec, sizes, drops, ...)
//	                         KEY = <room>_<peer>_<clip>
//	<room>-000000.safetensors  instead, with --format safetensors: "frames", "ts", "audio", __metadata__
//	<room>-000000.png        contact sheet: a grid of the clip's frames with their times
//	manifest.jsonl           one Shard per line: file, samples, frame counts, crc32 (or sha256)
//	<room>-chat.jsonl        chat the recorder received: time, peer, user, text
//	<room>-consent.jsonl     each peer's consent as it was granted and withdrawn
//
// Files are written under a hidden temporary name (".NAME.partial") and
// renamed when complete, so a killed recorder leaves only complete shards;
// the next run removes any partial file.
//
// A sender controls what the decoders get, so every track's work is
// metered in thread CPU time: a track that takes more than
// Config.CPUBudget of a core over Config.BudgetWindow, or whose peer's
// tracks take twice that together, is stopped, so that it cannot slow
// other peers' recording (budget.go). Tracks past Config.MaxTracks wait
// for a slot, at most Config.MaxWaiting of them; more are refused.
// TrackReport.Stopped says why a track was stopped or refused. A track
// that is not recorded (refused, stopped, ignored, waiting, or waiting for
// consent) is still read, its packets dropped as they come, until it
// ends: left unread, pion would keep up to 1 MB of it (tracks.go,
// discard).
//
// The decoder needs libvpx and the Scaler libyuv, both through cgo; a
// build without cgo has the whole output pipeline but reports ErrNoDecoder
// for every codec.
package recorder
