// Fused SparseK attention backward with recomputation (attention-spec.md 4.3 / 4.4; declared in
// sparsek_attention.h), in two parts that add up to the gradient of the one joint softmax:
//   1. window keys (w > 0): the flash backward kernel (flash_backward.cu: key-major, dK/dV in
//      registers, no per-element atomics for them) run with the SparseK forward's out and lse. Its
//      P = exp(a - lse) and dS = P (dP - D) with D = dO . O are exactly the window entries of the
//      joint softmax's gradient (window keys have m = 1 in both mask modes). It stores dK_w, dV_w
//      in fp32 (dK unscaled) straight into the dK / dV accumulators of part 2 (no zeroing pass)
//      and leaves dQ_w (fp32, unscaled) in its dQ accumulator, dq_window.
//   2. selected keys: one block per (64-query tile, head, batch) walks the tile's gathered candidate
//      chunks (candidates.cu; <= k + 63 keys, spec 4.3 property 3). Per chunk, recomputing P from
//      Q, K and the lse:
//        S = Q K^T, dP = dO V^T (mma.sync, fp32), then per element
//          gate_values: P = exp(a - lse), pv = P m, da = P (m dP - D), dm = P dP
//          log_mask:    P = exp(a + log m - lse), pv = P, da = P (dP - D), dm = exp(a - lse)(dP - D)
//        (m_ij as in the forward: on chunks of the tile's uniform keys from u_tile with no
//        per-element membership or state test, elsewhere from the ranges; sparsek_tile.cuh)
//        dQ += da K in registers (this block owns its queries: dq = bf16(s (dQ + dQ_w)), written once);
//        dK += da^T Q and dV += pv^T dO from bf16 copies of da and pv in shared memory, one 16-key
//        slice per warp, added to fp32 accumulators with 16-byte vector atomics (red.v4.f32: a
//        gathered key is shared with other tiles); finally dk = bf16(s dK), dv = bf16(dV);
//        G_ij = dm_ij on fractional selected entries: summed per query (g_row) and per key (g_key).
// Then per score row (one block per row, parallel scans): |S_i| from a difference array of the
// fractional ranges, c_i = g_row_i / |S_i|, C = prefix sums of c (fp64), and
//   du_j = g_key_j - (C[dead_from_j] - C[frac_from_j]).
// With shared scores (Hu = 1) every head adds into the same g_row / g_key.
// Atomics make dQ (flash part), dK, dV, du not bitwise deterministic. Tested in
// tests/attention/sparsek/test_sparsek_cuda.cpp against sparsek_attention_backward.
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "kernels/attention/flash_tile.cuh"
#include "kernels/attention/sparsek/sparsek_attention.h"
#include "kernels/attention/sparsek/sparsek_tile.cuh"

namespace sk_sparsek_bwd {

using namespace sk_flash;
using namespace sk_sparsek;


// Variants (SkSparsekForwardParams::bwd_variant, SPARSEK_SPARSEK_BWD; kPipelined at 3 blocks of 4
// warps per SM the default, where it applies; measured on an H100 at 16k, the backward kernel 2x
// faster than with shared atomics, 3.76 -> 3.23 ms going from 2 to 3 blocks per SM; the key split
// (2 blocks of 8 warps) was 3.30 -> 2.82 ms faster before the cheaper gathers, atomics and D_i pass
// of 2026-12-06 and is ~2% slower in fwd+bwd after them; docs/perf-notes.md):
//   kGsum:      G_ij summed over the tile's queries by a reduce-scatter of warp shuffles (each lane
//               ends with two key slots' sums of its warp) into one shared row per warp, instead of
//               a shared-memory atomic per fractional element (8 lanes of a warp hit one address).
//   kPipelined: kGsum + the candidate list staged in shared memory and chunk c + 1's K/V gathers
//               and key metadata issued before chunk c's compute (two K/V buffers, two metadata
//               sets); the default waits for each chunk's gathers. hd 64 only (at hd 128 the
//               second buffers would leave one block per SM).
//   kSplit = 2 (SPARSEK_SPARSEK_BWD=keysplit; kPipelined, hd 64, 64-query tiles): twice the warps
//               per block, the two warps of a 16-row group each taking 32 of a chunk's 64 keys in
//               S, dP, the element work and dQ (Q / dO fragments read from shared memory per
//               chunk instead of held in registers), so that two blocks of 8 warps fit an SM
//               (16 warps instead of 12 for a latency-bound kernel); the two halves' dQ are added
//               through shared memory at the end. dK / dV: one 16-key slice per warp, as with 8 warps.
template <int D, int BQ, bool kPipelined>
constexpr int bwd_smem_bytes() {
  // Q, dO (BQ x D), (K, V) x buffers (64 x D) + da, pv (BQ x 64 bf16 each)
  return 2 * BQ * D * 2 + (kPipelined ? 4 : 2) * kBN * D * 2 + 2 * BQ * kBN * 2;
}

// Sum over the 8 lanes of a quad column (lanes t, t + 4, ..., t + 28) of v[16] (v[2 j + c]: key
// slot j * 8 + 2 t + c), reduce-scattered: returns in out[c] the warp's sum for slot g * 8 + 2 t + c
// (g = lane / 4), so the 32 lanes hold the 64 slots once each. 14 shuffles.
__device__ __forceinline__ void reduce_scatter_slots(const float (&v)[16], float (&out)[2], int lane) {
  float w[8];
  const bool b4 = (lane >> 4) & 1, b3 = (lane >> 3) & 1, b2 = (lane >> 2) & 1;
#pragma unroll
  for (int i = 0; i < 8; ++i) {  // lane bit 4: keep slots j = 4..7 (b4) or 0..3
    const float send = b4 ? v[i] : v[i + 8], keep = b4 ? v[i + 8] : v[i];
    w[i] = keep + __shfl_xor_sync(0xffffffff, send, 16);
  }
  float x[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float send = b3 ? w[i] : w[i + 4], keep = b3 ? w[i + 4] : w[i];
    x[i] = keep + __shfl_xor_sync(0xffffffff, send, 8);
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const float send = b2 ? x[i] : x[i + 2], keep = b2 ? x[i + 2] : x[i];
    out[i] = keep + __shfl_xor_sync(0xffffffff, send, 4);
  }
}

// Stores the pair (row, col..col+1) of a swizzled tile of rows of 64 bf16.
__device__ __forceinline__ void store_pair64(unsigned char* tile, int row, int col, float lo, float hi) {
  *reinterpret_cast<uint32_t*>(tile + swz<64>(row, col & ~7) + (col & 7) * 2) = pack_bf16(lo, hi);
}

// The same for the 8 values of a 32-key half (v[2 j + c]: slot j * 8 + 2 t + c of the half): returns
// the warp's sum for slot (2 b4 + b3) * 8 + 2 t + b2 of the half (b4, b3, b2: lane bits 4, 3, 2),
// so the 32 lanes hold the 32 slots once each. 7 shuffles.
__device__ __forceinline__ float reduce_scatter_half_slots(const float (&v)[8], int lane) {
  const bool b4 = (lane >> 4) & 1, b3 = (lane >> 3) & 1, b2 = (lane >> 2) & 1;
  float w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {  // lane bit 4: keep j = 2, 3 (b4) or 0, 1
    const float send = b4 ? v[i] : v[i + 4], keep = b4 ? v[i + 4] : v[i];
    w[i] = keep + __shfl_xor_sync(0xffffffff, send, 16);
  }
  float x[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {  // lane bit 3: keep the odd or even j of the pair
    const float send = b3 ? w[i] : w[i + 2], keep = b3 ? w[i + 2] : w[i];
    x[i] = keep + __shfl_xor_sync(0xffffffff, send, 8);
  }
  const float send = b2 ? x[0] : x[1], keep = b2 ? x[1] : x[0];  // lane bit 2: c
  return keep + __shfl_xor_sync(0xffffffff, send, 4);
}

// acc[key] += X^T Y for the 16 key slots of `slice` (keys slice * 16 .. + 15): X (BQ queries x 64
// key slots, rows of 64 bf16) and Y (BQ queries x D) swizzled tiles; fp32 atomics into an (T, H, D)
// accumulator. acc_lane: the accumulator of this batch entry and head plus the lane's dims
// (2 (t & ~1)); key_stride = H D: a key's row is one 32 x 32 -> 64-bit multiply away.
template <int D, int BQ>
__device__ __forceinline__ void accumulate_keys(uint32_t sX, uint32_t sY, const int* keys, float* acc_lane,
                                                uint32_t key_stride, int slice, int lane) {
  const int warp = slice;
  const int g = lane >> 2, t = lane & 3;
  float c[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) c[i][0] = c[i][1] = c[i][2] = c[i][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < BQ / 16; ++kk) {
    uint32_t af[4];
    load_a_trans<64>(af, sX, warp * 16, kk * 16, lane);
#pragma unroll
    for (int i = 0; i < D / 16; ++i) {
      uint32_t bf[4];
      load_b_trans<D>(bf, sY, kk * 16, i * 16, lane);
      mma_bf16(c[2 * i], af, bf[0], bf[1]);
      mma_bf16(c[2 * i + 1], af, bf[2], bf[3]);
    }
  }
  // Lanes t and t ^ 1 swap halves so that each adds 4 consecutive dims of one key row: the even
  // lane row g (dims 2t .. 2t + 3), the odd lane row g + 8 (dims 2t - 2 .. 2t + 1).
  const bool odd = t & 1;
  const int key = keys[warp * 16 + g + (odd ? 8 : 0)];
  float* base = acc_lane + static_cast<uint64_t>(key < 0 ? 0u : static_cast<uint32_t>(key)) * key_stride;
#pragma unroll
  for (int i = 0; i < D / 8; ++i) {
    const float s0 = odd ? c[i][0] : c[i][2], s1 = odd ? c[i][1] : c[i][3];
    const float r0 = __shfl_xor_sync(0xffffffff, s0, 1), r1 = __shfl_xor_sync(0xffffffff, s1, 1);
    const float4 val = odd ? make_float4(r0, r1, c[i][2], c[i][3]) : make_float4(c[i][0], c[i][1], r0, r1);
    if (key >= 0) atomicAdd(reinterpret_cast<float4*>(base + i * 8), val);
  }
}

template <int D, int BQ, bool kGsum, bool kPipelined, int kMinBlocks = 1, int kSplit = 1>
__global__ void __launch_bounds__(threads_of<BQ>() * kSplit, kMinBlocks) sparsek_backward_kernel(
    const SkSparsekForwardParams p, const __nv_bfloat16* __restrict__ dout, const SkFlashStrides dstr,
    const __nv_bfloat16* __restrict__ outp, const float* __restrict__ lse, __nv_bfloat16* __restrict__ dq,
    const float* __restrict__ dq_window, float* __restrict__ dk_acc, float* __restrict__ dv_acc, float* __restrict__ g_row, float* __restrict__ g_key) {
  // kRowWarps warps of 16 query rows; kSplit of them per row group, each over kKeys of a chunk's keys.
  constexpr int kBQ = BQ, kRowWarps = warps_of<BQ>(), kWarps = kRowWarps * kSplit, kThreads = kWarps * 32;
  constexpr int kKeys = kBN / kSplit;
  constexpr bool kFragsInRegs = kSplit == 1;  // Q / dO A fragments held in registers for the whole tile
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int kBuffers = kPipelined ? 2 : 1;
  static_assert(!kPipelined || kGsum, "the pipelined kernel sums G by shuffles");
  static_assert(kSplit == 1 || (kSplit == 2 && kPipelined && BQ == 64 && D == 64), "key split: pipelined, hd 64, 64-query tiles");
  __shared__ ChunkKeys meta_buf[kBuffers];
  __shared__ float sDelta[kBQ], sLse[kBQ];
  __shared__ float s_gwarp[kGsum ? kRowWarps : 1][kBN];  // kGsum: each row group's G sums per key slot
  const SkFlashParams& a = p.attn;
  const int tile = static_cast<int>(gridDim.x - 1 - blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z;
  const int T = a.seq_len, H = a.heads;
  const int n_tiles = gridDim.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wr = warp % kRowWarps;              // row group: query rows wr * 16 .. + 15 of the tile
  const int key0 = (warp / kRowWarps) * kKeys;  // this warp's first key slot of each chunk
  const int q0 = tile * kBQ;
  const int q_last = min(q0 + kBQ, T) - 1;

  const int srow = b * p.score_heads + (p.score_heads == 1 ? 0 : h);
  const float* u = p.u + static_cast<int64_t>(srow) * T;
  const double* tau = p.tau + static_cast<int64_t>(srow) * T;
  const SkKeyRange* rg = p.ranges + static_cast<int64_t>(srow) * T;
  const int32_t* cand = p.cand + (static_cast<int64_t>(srow) * n_tiles + tile) * p.cand_cap;
  const int n_cand = min(p.cand_n[static_cast<int64_t>(srow) * n_tiles + tile], p.cand_cap);
  // Chunks [0, n_uniform_chunks) hold uniform keys only (sparsek_attention.h).
  const int n_uniform_chunks = uniform_chunk_count(p, static_cast<int64_t>(srow) * n_tiles + tile, n_cand);

  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(a.q) + b * a.q_stride.batch + h * a.q_stride.head;
  const __nv_bfloat16* k = static_cast<const __nv_bfloat16*>(a.k) + b * a.k_stride.batch + h * a.k_stride.head;
  const __nv_bfloat16* v = static_cast<const __nv_bfloat16*>(a.v) + b * a.v_stride.batch + h * a.v_stride.head;
  const __nv_bfloat16* dO = dout + b * dstr.batch + h * dstr.head;

  constexpr uint32_t kTile = kBN * D * 2;
  const uint32_t sQ = smem_u32(smem);
  const uint32_t sdO = sQ + kBQ * D * 2, sK0 = sdO + kBQ * D * 2, sV0 = sK0 + kBuffers * kTile;
  unsigned char* dS_ptr = smem + 2 * kBQ * D * 2 + 2 * kBuffers * kTile;
  unsigned char* pv_ptr = dS_ptr + kBQ * kBN * 2;
  const uint32_t sdS = smem_u32(dS_ptr), sPv = smem_u32(pv_ptr);
  int32_t* s_cand = reinterpret_cast<int32_t*>(smem + bwd_smem_bytes<D, BQ, kPipelined>());  // kPipelined
  if constexpr (kPipelined) {
    for (int i = static_cast<int>(threadIdx.x); i < staged_cand_ints(n_cand); i += kThreads)
      s_cand[i] = i < n_cand ? cand[i] : -1;
    __syncthreads();
  }

  // Candidate chunks only (the window keys are the flash pass's).
  const int n_chunks = (n_cand + kBN - 1) / kBN;
  auto key_of_chunk = [&](int c, int r) -> int {
    const int idx = c * kBN + r;
    if constexpr (kPipelined) return s_cand[idx];  // padded with -1 (staged_cand_ints)
    return idx < n_cand ? cand[idx] : -1;
  };
  // Chunk c's K/V gathers (cp.async, committed by the caller) and its key metadata: thread r < kBN
  // loads key slot r's into registers (`pending`), store_meta writes them to meta_buf[buf].
  PendingKey pending;
  auto load_chunk = [&](int c, int buf) {
    gather_kv_tiles<D, kThreads>(sK0 + buf * kTile, sV0 + buf * kTile, k, a.k_stride.row, v, a.v_stride.row,
                                 [&](int r) { return key_of_chunk(c, r); });
    if (threadIdx.x < kBN) pending.load(key_of_chunk(c, threadIdx.x), true, rg, u);
  };
  auto store_meta = [&](int buf) {
    if (threadIdx.x < kBN) pending.store(meta_buf[buf], threadIdx.x, q0, q_last);
  };

  load_tile<kBQ, D, kThreads>(sQ, q, a.q_stride.row, q0, T);
  load_tile<kBQ, D, kThreads>(sdO, dO, dstr.row, q0, T);
  if constexpr (kPipelined) {
    if (n_chunks > 0) {
      load_chunk(0, 0);
      store_meta(0);
    }
  }
  cp_async_commit();
  // D_i = dO_i . O_i and the lse in log2 units, per query row of the tile: kPieces lanes per row,
  // 16 bytes (8 elements) of O and of dO each, every step's loads issued together.
  {
    constexpr int kPieces = D / 8, kRowsPerStep = kThreads / kPieces;
    static_assert(kThreads % kPieces == 0 && kBQ % kRowsPerStep == 0 && kPieces <= 32, "row pieces");
    const int piece = static_cast<int>(threadIdx.x) % kPieces;
#pragma unroll
    for (int r0 = 0; r0 < kBQ; r0 += kRowsPerStep) {
      const int r = r0 + static_cast<int>(threadIdx.x) / kPieces, row = q0 + r;
      float acc = 0.f;
      if (row < T) {
        const uint4 ov = *reinterpret_cast<const uint4*>(outp + ((static_cast<int64_t>(b) * T + row) * H + h) * D + piece * 8);
        const uint4 dv = *reinterpret_cast<const uint4*>(dO + static_cast<int64_t>(row) * dstr.row + piece * 8);
        const uint32_t ow[4] = {ov.x, ov.y, ov.z, ov.w}, dw[4] = {dv.x, dv.y, dv.z, dv.w};
#pragma unroll
        for (int x = 0; x < 4; ++x) {
          const float2 of = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&ow[x]));
          const float2 df = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&dw[x]));
          acc += of.x * df.x + of.y * df.y;
        }
      }
#pragma unroll
      for (int off = kPieces / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, off);
      if (piece == 0) {
        sDelta[r] = acc;
        sLse[r] = row < T ? lse[(static_cast<int64_t>(b) * H + h) * T + row] * kLog2e : 0.f;
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  const float scale_log2 = a.softmax_scale * kLog2e;
  const bool log_mask = p.log_mask != 0;
  uint32_t qf[kFragsInRegs ? D / 16 : 1][4], df[kFragsInRegs ? D / 16 : 1][4];
  if constexpr (kFragsInRegs) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      load_a<D>(qf[kk], sQ, wr * 16, kk * 16, lane);
      load_a<D>(df[kk], sdO, wr * 16, kk * 16, lane);
    }
  }
  float dqa[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) dqa[i][0] = dqa[i][1] = dqa[i][2] = dqa[i][3] = 0.f;
  const int lr_a = wr * 16 + g, lr_b = lr_a + 8;
  // The dK / dV accumulators of this batch entry and head at this lane's dims (accumulate_keys).
  const uint32_t key_stride = static_cast<uint32_t>(H * D);
  const int64_t bh_lane = (static_cast<int64_t>(b) * T * H + h) * D + 2 * (t & ~1);
  float* const dk_lane = dk_acc + bh_lane;
  float* const dv_lane = dv_acc + bh_lane;
  const int row_a = q0 + lr_a, row_b = q0 + lr_b;
  const float tau_r[2] = {row_a < T ? static_cast<float>(tau[row_a]) : 0.f,
                          row_b < T ? static_cast<float>(tau[row_b]) : 0.f};
  const float delta_r[2] = {sDelta[lr_a], sDelta[lr_b]}, lse_r[2] = {sLse[lr_a], sLse[lr_b]};
  float grow[2] = {0.f, 0.f};

  for (int c = 0; c < n_chunks; ++c) {
    const int buf = kPipelined ? (c & 1) : 0;
    if constexpr (kPipelined) {
      cp_async_wait<0>();
      __syncthreads();  // chunk c's tiles and metadata landed; chunk c - 1's are no longer read
      if (c + 1 < n_chunks) load_chunk(c + 1, buf ^ 1);
      cp_async_commit();
    } else {
      __syncthreads();  // the previous chunk's tiles and metadata are no longer read
      load_chunk(c, 0);
      cp_async_commit();
      store_meta(0);
      cp_async_wait<0>();
      __syncthreads();
    }
    const uint32_t sK = sK0 + buf * kTile, sV = sV0 + buf * kTile;
    ChunkKeys& meta = meta_buf[buf];
    // kGsum: this thread's G sums per key slot column (2 j + c: slot key0 + j * 8 + 2 t + c)
    float gcol[kKeys / 4];
#pragma unroll
    for (int i = 0; i < kKeys / 4; ++i) gcol[i] = 0.f;

    float s[kKeys / 8][4], dp[kKeys / 8][4];
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[4], oa[4];  // the Q / dO fragments of this k-step (from registers or shared memory)
      if constexpr (kFragsInRegs) {
#pragma unroll
        for (int x = 0; x < 4; ++x) qa[x] = qf[kFragsInRegs ? kk : 0][x], oa[x] = df[kFragsInRegs ? kk : 0][x];
      } else {
        load_a<D>(qa, sQ, wr * 16, kk * 16, lane);
        load_a<D>(oa, sdO, wr * 16, kk * 16, lane);
      }
#pragma unroll
      for (int j = 0; j < kKeys / 16; ++j) {
        uint32_t bf[4];
        load_b<D>(bf, sK, key0 + j * 16, kk * 16, lane);
        mma_bf16(s[2 * j], qa, bf[0], bf[1]);
        mma_bf16(s[2 * j + 1], qa, bf[2], bf[3]);
        load_b<D>(bf, sV, key0 + j * 16, kk * 16, lane);
        mma_bf16(dp[2 * j], oa, bf[0], bf[1]);
        mma_bf16(dp[2 * j + 1], oa, bf[2], bf[3]);
      }
    }

    // Per element: P recomputed, pv = P m (dV), da = dS (dK, dQ), dm = dL/dm into G on fractional
    // entries. A chunk of uniform keys takes m from ChunkKeys::u_tile with no membership or state
    // test (every row of the tile is a valid query in Sel_i of every key).
    uint32_t daf[kKeys / 16][4];
    auto elementwise = [&](auto uniform_tag, auto log_mask_tag) {
      constexpr bool uniform = decltype(uniform_tag)::value, kLogMask = decltype(log_mask_tag)::value;
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
        float da_v[4], pv_v[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int slot = key0 + j * 8 + 2 * t + (e & 1);
          const int r = e < 2 ? 0 : 1;
          const int row = r == 0 ? row_a : row_b;
          float da = 0.f, pv = 0.f;
          bool in_sel = uniform, frac = false;
          float m;
          if constexpr (uniform) {
            m = __saturatef(meta.u_tile[slot] - tau_r[r]);
          } else {
            const int key = meta.key[slot];
            in_sel = key >= 0 && row < T && meta.sel_from[slot] <= row && row < meta.sel_to[slot];
            m = in_sel ? ranged_mask(meta, slot, row, tau_r[r]) : 0.f;
            frac = row >= meta.frac_from[slot] && row < meta.dead_from[slot];
          }
          if (in_sel) {
            float dm;
            if constexpr (!kLogMask) {
              const float P = softmax_exp2<true>(fmaf(s[j][e], scale_log2, -lse_r[r]));
              pv = P * m;
              da = P * (m * dp[j][e] - delta_r[r]);
              dm = P * dp[j][e];
            } else {
              const float x = s[j][e] * scale_log2;  // raw logit, log2 units
              const float P = m > 0.f ? softmax_exp2<true>(x + log2f(m) - lse_r[r]) : 0.f;
              pv = P;
              da = P * (dp[j][e] - delta_r[r]);
              dm = softmax_exp2<true>(x - lse_r[r]) * (dp[j][e] - delta_r[r]);
            }
            if constexpr (uniform) {  // frac_tile 1 or 0 per slot: a product, no divergent branch
              const float fw = meta.frac_tile[slot];
              grow[r] += dm * fw;
              if constexpr (kGsum) gcol[2 * j + (e & 1)] += dm * fw;
              else if (fw != 0.f) atomicAdd(&meta.g[slot], dm);
            } else if (frac) {
              grow[r] += dm;
              if constexpr (kGsum) gcol[2 * j + (e & 1)] += dm;
              else atomicAdd(&meta.g[slot], dm);
            }
          }
          da_v[e] = da;
          pv_v[e] = pv;
        }
        daf[j / 2][(j & 1) * 2 + 0] = pack_bf16(da_v[0], da_v[1]);
        daf[j / 2][(j & 1) * 2 + 1] = pack_bf16(da_v[2], da_v[3]);
        const int col = key0 + j * 8 + 2 * t;
        store_pair64(dS_ptr, lr_a, col, da_v[0], da_v[1]);
        store_pair64(dS_ptr, lr_b, col, da_v[2], da_v[3]);
        store_pair64(pv_ptr, lr_a, col, pv_v[0], pv_v[1]);
        store_pair64(pv_ptr, lr_b, col, pv_v[2], pv_v[3]);
      }
    };
    // (the mask mode as a template tag too, so that the element loop has no branch on it)
    if (c < n_uniform_chunks) {
      if (log_mask) elementwise(std::true_type{}, std::true_type{});
      else elementwise(std::true_type{}, std::false_type{});
    } else {
      if (log_mask) elementwise(std::false_type{}, std::true_type{});
      else elementwise(std::false_type{}, std::false_type{});
    }
    // dQ += da K.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < D / 16; ++i) {
        uint32_t bf[4];
        load_b_trans<D>(bf, sK, key0 + kk * 16, i * 16, lane);
        mma_bf16(dqa[2 * i], daf[kk], bf[0], bf[1]);
        mma_bf16(dqa[2 * i + 1], daf[kk], bf[2], bf[3]);
      }
    }
    if constexpr (kGsum) {
      if constexpr (kSplit == 1) {
        float gs[2];
        reduce_scatter_slots(gcol, gs, lane);
        s_gwarp[wr][g * 8 + 2 * t] = gs[0];
        s_gwarp[wr][g * 8 + 2 * t + 1] = gs[1];
      } else {
        s_gwarp[wr][key0 + (((lane >> 4) & 1) * 2 + ((lane >> 3) & 1)) * 8 + 2 * t + ((lane >> 2) & 1)] =
            reduce_scatter_half_slots(gcol, lane);
      }
    }
    __syncthreads();  // da, pv tiles and the G sums complete
    // dK (a slice of 16 keys per warp) += da^T Q and dV += pv^T dO: with 4 warps each warp does
    // both for its slice (one accumulator at a time), with 8 warps 0-3 dK and 4-7 dV.
    if constexpr (kWarps == 4) {
      accumulate_keys<D, BQ>(sdS, sQ, meta.key, dk_lane, key_stride, warp, lane);
      accumulate_keys<D, BQ>(sPv, sdO, meta.key, dv_lane, key_stride, warp, lane);
    } else {
      static_assert(kWarps == 8, "4 or 8 warps per block");
      if (warp < 4) accumulate_keys<D, BQ>(sdS, sQ, meta.key, dk_lane, key_stride, warp, lane);
      else accumulate_keys<D, BQ>(sPv, sdO, meta.key, dv_lane, key_stride, warp - 4, lane);
    }
    if (threadIdx.x < kBN) {
      const int r = threadIdx.x, key = meta.key[r];
      float gsum = meta.g[r];
      if constexpr (kGsum) {
        gsum = 0.f;
#pragma unroll
        for (int w = 0; w < kRowWarps; ++w) gsum += s_gwarp[w][r];
      }
      if (key >= 0 && gsum != 0.f) atomicAdd(g_key + static_cast<int64_t>(srow) * T + key, gsum);
    }
    if constexpr (kPipelined) {
      if (c + 1 < n_chunks) store_meta(buf ^ 1);  // read after the next iteration's barrier
    }
  }

  // This thread's G row sums (over its quad) into g_row.
  auto add_row_g = [&](int r) {
    float gs = grow[r];
    gs += __shfl_xor_sync(0xffffffff, gs, 1);
    gs += __shfl_xor_sync(0xffffffff, gs, 2);
    const int row = r == 0 ? row_a : row_b;
    if (row < T && t == 0 && gs != 0.f) atomicAdd(g_row + static_cast<int64_t>(srow) * T + row, gs);
  };
  if constexpr (kSplit == 2) {
    // The second key half's dQ into the first's, through the (no longer read) K/V buffers: fp32,
    // 32 values per thread, lane-consecutive (no bank conflicts). The second half's G row sums go
    // to g_row on their own.
    float* s_dq = reinterpret_cast<float*>(smem + 2 * kBQ * D * 2);
    static_assert(kRowWarps * 32 * (D / 2) * 4 <= 2 * kBuffers * kTile, "dQ exchange fits the K/V buffers");
    cp_async_wait<0>();
    __syncthreads();
    if (key0 != 0) {
#pragma unroll
      for (int i = 0; i < D / 8; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) s_dq[(i * 4 + e) * kRowWarps * 32 + wr * 32 + lane] = dqa[i][e];
    }
    __syncthreads();
    if (key0 != 0) {
      add_row_g(0);
      add_row_g(1);
      return;
    }
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) dqa[i][e] += s_dq[(i * 4 + e) * kRowWarps * 32 + wr * 32 + lane];
  }

  // dQ (scaled) and the per-query G sums.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    add_row_g(r);
    const int row = r == 0 ? row_a : row_b;
    if (row >= T) continue;
    const int64_t row_off = ((static_cast<int64_t>(b) * T + row) * H + h) * D;
    __nv_bfloat16* qrow = dq + row_off;
    // The window part's dQ_w (fp32, unscaled, (B, T, H, D)), when there is one.
    const float* wrow = dq_window ? dq_window + row_off : nullptr;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      float x0 = dqa[i][2 * r], x1 = dqa[i][2 * r + 1];
      if (wrow) {
        const float2 w2 = *reinterpret_cast<const float2*>(wrow + i * 8 + 2 * t);
        x0 += w2.x;
        x1 += w2.y;
      }
      *reinterpret_cast<uint32_t*>(qrow + i * 8 + 2 * t) = pack_bf16(x0 * a.softmax_scale, x1 * a.softmax_scale);
    }
  }
}

__global__ void zero_kernel(float* x, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = 0.f;
}

// dk = bf16(scale dk_acc), dv = bf16(dv_acc), four elements a thread and step (n % 4 == 0: D is).
__global__ void finish_kv_kernel(const float* __restrict__ dk_acc, const float* __restrict__ dv_acc, float scale,
                                 __nv_bfloat16* __restrict__ dk, __nv_bfloat16* __restrict__ dv, int64_t n) {
  for (int64_t i = 4 * (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x); i < n;
       i += 4 * static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float4 xk = *reinterpret_cast<const float4*>(dk_acc + i), xv = *reinterpret_cast<const float4*>(dv_acc + i);
    *reinterpret_cast<uint2*>(dk + i) = make_uint2(pack_bf16(xk.x * scale, xk.y * scale), pack_bf16(xk.z * scale, xk.w * scale));
    *reinterpret_cast<uint2*>(dv + i) = make_uint2(pack_bf16(xv.x, xv.y), pack_bf16(xv.z, xv.w));
  }
}

constexpr int kDuThreads = 1024;

// Exclusive scan over the block of one value per thread (int or double); *total gets the sum.
// sh: kDuThreads / 32 values of shared memory.
template <class V>
__device__ V block_exclusive_scan(V x, V* sh, V* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int kWarpsDu = kDuThreads / 32;
  V v = x;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const V y = __shfl_up_sync(0xffffffff, v, off);
    if (lane >= off) v += y;
  }
  if (lane == 31) sh[warp] = v;
  __syncthreads();
  if (warp == 0) {
    V w = lane < kWarpsDu ? sh[lane] : V(0);
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const V y = __shfl_up_sync(0xffffffff, w, off);
      if (lane >= off) w += y;
    }
    if (lane < kWarpsDu) sh[lane] = w;
  }
  __syncthreads();
  const V before = warp > 0 ? sh[warp - 1] : V(0);
  *total = sh[kWarpsDu - 1];
  __syncthreads();  // sh is reused by the next scan
  return before + v - x;
}

// du per score row (one block of kDuThreads per row): |S_i| by a difference array (int atomics),
// c_i = g_row_i / |S_i|, C = prefix sums of c (fp64), both scans over tiles of kDuThreads
// consecutive queries (one query a thread: coalesced loads), then du_j in parallel.
__global__ void __launch_bounds__(kDuThreads) du_kernel(const SkKeyRange* __restrict__ ranges,
                                                        const float* __restrict__ g_row,
                                                        const float* __restrict__ g_key, int T,
                                                        double* __restrict__ cpre, int32_t* __restrict__ cnt,
                                                        float* __restrict__ du) {
  __shared__ int sh_i[kDuThreads / 32];
  __shared__ double sh_d[kDuThreads / 32];
  const int row = blockIdx.x, tid = threadIdx.x;
  const SkKeyRange* rg = ranges + static_cast<int64_t>(row) * T;
  const float* gr = g_row + static_cast<int64_t>(row) * T;
  double* C = cpre + static_cast<int64_t>(row) * (T + 1);
  int32_t* n = cnt + static_cast<int64_t>(row) * (T + 1);
  for (int i = tid; i <= T; i += kDuThreads) n[i] = 0;
  __syncthreads();
  for (int j = tid; j < T; j += kDuThreads) {
    const SkKeyRange e = rg[j];
    if (e.frac_from < e.dead_from) atomicAdd(n + e.frac_from, 1), atomicAdd(n + e.dead_from, -1);
  }
  __syncthreads();
  int count_before = 0;  // |S| difference sum over the earlier tiles
  double c_before = 0.0;  // C over the earlier tiles
  for (int i0 = 0; i0 < T; i0 += kDuThreads) {
    const int i = i0 + tid;
    const int dn = i < T ? n[i] : 0;
    int count_tile;
    const int count = count_before + block_exclusive_scan(dn, sh_i, &count_tile) + dn;  // |S_i|
    const double c = i < T && count > 0 ? static_cast<double>(gr[i]) / count : 0.0;
    double c_tile;
    const double run = c_before + block_exclusive_scan(c, sh_d, &c_tile) + c;
    if (i < T) C[i + 1] = run;
    count_before += count_tile;
    c_before += c_tile;
  }
  if (tid == 0) C[0] = 0.0;
  __syncthreads();
  for (int j = tid; j < T; j += kDuThreads) {
    const SkKeyRange e = rg[j];
    double d = static_cast<double>(g_key[static_cast<int64_t>(row) * T + j]);
    if (e.frac_from < e.dead_from) d -= C[e.dead_from] - C[e.frac_from];
    du[static_cast<int64_t>(row) * T + j] = static_cast<float>(d);
  }
}

template <int D, int BQ, bool kGsum, bool kPipelined, int kMinBlocks = 1, int kSplit = 1>
int launch_backward(const SkSparsekForwardParams& p, const void* dout, SkFlashStrides ds, const void* out,
                    const float* lse, void* dq, const float* dq_window, float* dk_acc, float* dv_acc, float* g_row,
                    float* g_key, cudaStream_t s) {
  // kPipelined: + the candidate list (cand_cap ints) after the tiles.
  const int smem = bwd_smem_bytes<D, BQ, kPipelined>() + (kPipelined ? staged_cand_ints(p.cand_cap) * 4 : 0);
  auto* kernel = sparsek_backward_kernel<D, BQ, kGsum, kPipelined, kMinBlocks, kSplit>;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess)
    return SK_KERNEL_LAUNCH_FAILED;
  dim3 grid((p.attn.seq_len + BQ - 1) / BQ, p.attn.heads, p.attn.batch);
  kernel<<<grid, threads_of<BQ>() * kSplit, smem, s>>>(
      p, static_cast<const __nv_bfloat16*>(dout), ds, static_cast<const __nv_bfloat16*>(out), lse,
      static_cast<__nv_bfloat16*>(dq), dq_window, dk_acc, dv_acc, g_row, g_key);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

// The backward kernel of `variant` (0 sync, 1 gsum, 2 pipelined: hd 64 only; 3 pipelined compiled
// for 3 blocks per SM: hd 64, 64-query tiles, else as 2; 4 pipelined with the key split, two
// blocks of 8 warps per SM: hd 64, 64-query tiles, else as 2) for tiles of BQ.
template <int BQ>
int launch_backward_variant(const SkSparsekForwardParams& p, int variant, const void* dout, SkFlashStrides ds,
                            const void* out, const float* lse, void* dq, const float* dq_window, float* dk_acc,
                            float* dv_acc, float* g_row, float* g_key, cudaStream_t s) {
  if (p.attn.head_dim == 64) {
    if constexpr (BQ == 64) {
      if (variant == 3)
        return launch_backward<64, BQ, true, true, 3>(p, dout, ds, out, lse, dq, dq_window, dk_acc, dv_acc, g_row, g_key, s);
      if (variant == 4)
        return launch_backward<64, BQ, true, true, 2, 2>(p, dout, ds, out, lse, dq, dq_window, dk_acc, dv_acc, g_row, g_key, s);
    }
    if (variant >= 2) return launch_backward<64, BQ, true, true>(p, dout, ds, out, lse, dq, dq_window, dk_acc, dv_acc, g_row, g_key, s);
    if (variant == 1) return launch_backward<64, BQ, true, false>(p, dout, ds, out, lse, dq, dq_window, dk_acc, dv_acc, g_row, g_key, s);
    return launch_backward<64, BQ, false, false>(p, dout, ds, out, lse, dq, dq_window, dk_acc, dv_acc, g_row, g_key, s);
  }
  if (variant >= 1) return launch_backward<128, BQ, true, false>(p, dout, ds, out, lse, dq, dq_window, dk_acc, dv_acc, g_row, g_key, s);
  return launch_backward<128, BQ, false, false>(p, dout, ds, out, lse, dq, dq_window, dk_acc, dv_acc, g_row, g_key, s);
}

}  // namespace sk_sparsek_bwd

extern "C" int sk_cuda_sparsek_backward(const SkSparsekForwardParams* p, const void* dout, SkFlashStrides dout_stride,
                                        const void* out, const float* lse, void* dq, void* dk, void* dv, float* du,
                                        float* dkv_accum, float* delta, float* dq_window, float* g_row, float* g_key,
                                        double* c_prefix, int32_t* frac_count, cudaStream_t s) {
  using namespace sk_sparsek_bwd;
  if (!p || !sk_flash::params_ok(&p->attn) || !dout || !out || !lse || !dq || !dk || !dv || !du) return SK_KERNEL_BAD_ARG;
  if (p->attn.batch == 0 || p->attn.seq_len == 0) return SK_KERNEL_OK;
  if (!p->u || !p->tau || !p->ranges || !p->cand || !p->cand_n || p->cand_cap < 1 || p->k < 1) return SK_KERNEL_BAD_ARG;
  if (p->score_heads != 1 && p->score_heads != p->attn.heads) return SK_KERNEL_BAD_ARG;
  if (!gather_strides_ok(p->attn)) return SK_KERNEL_BAD_ARG;
  if (!dkv_accum || !g_row || !g_key || !c_prefix || !frac_count) return SK_KERNEL_BAD_ARG;
  const bool window = p->attn.window > 0;
  if (window && (!delta || !dq_window)) return SK_KERNEL_BAD_ARG;
  if (reinterpret_cast<uintptr_t>(dout) % 16 || dout_stride.batch % 8 || dout_stride.head % 8 || dout_stride.row % 8)
    return SK_KERNEL_BAD_ARG;
  if (reinterpret_cast<uintptr_t>(out) % 16) return SK_KERNEL_MISALIGNED;  // the D_i pre-pass reads 16 bytes a lane
  if (reinterpret_cast<uintptr_t>(dkv_accum) % 16 || reinterpret_cast<uintptr_t>(dq_window) % 16 ||
      reinterpret_cast<uintptr_t>(dk) % 8 || reinterpret_cast<uintptr_t>(dv) % 8)
    return SK_KERNEL_MISALIGNED;
  const int64_t B = p->attn.batch, H = p->attn.heads, T = p->attn.seq_len, D = p->attn.head_dim;
  const int64_t n = B * T * H * D, rows = B * p->score_heads;
  float* dk_acc = dkv_accum;
  float* dv_acc = dkv_accum + n;
  if (window) {
    // Window part: the flash backward with the joint softmax's out and lse. It stores every key's
    // dK_w (unscaled) and dV_w in fp32 into dk_acc / dv_acc, which the selected keys' atomics then
    // add to, and leaves dQ_w (unscaled) in dq_window.
    SkFlashParams fp = p->attn;
    fp.grad_row_stride = 0;
    fp.grad_kv_f32 = 1;
    const int st = sk_cuda_flash_backward(&fp, dout, dout_stride, out, lse, nullptr, dk_acc, dv_acc, delta, dq_window, s);
    if (st != SK_KERNEL_OK) return st;
  } else {
    zero_kernel<<<1024, 256, 0, s>>>(dkv_accum, 2 * n);
  }
  zero_kernel<<<256, 256, 0, s>>>(g_row, rows * T);
  zero_kernel<<<256, 256, 0, s>>>(g_key, rows * T);
  const float* wg = window ? dq_window : nullptr;
  const int variant = p->bwd_variant >= 2 && (D != 64 || p->cand_cap > kMaxStagedCand) ? 1 : p->bwd_variant;
  int st = SK_KERNEL_BAD_ARG;
  if (p->tile_q == SK_SPARSEK_TILE_Q)
    st = launch_backward_variant<SK_SPARSEK_TILE_Q>(*p, variant, dout, dout_stride, out, lse, dq, wg, dk_acc, dv_acc,
                                                    g_row, g_key, s);
  else if (p->tile_q == SK_SPARSEK_TILE_Q_WIDE)
    st = launch_backward_variant<SK_SPARSEK_TILE_Q_WIDE>(*p, variant, dout, dout_stride, out, lse, dq, wg, dk_acc,
                                                         dv_acc, g_row, g_key, s);
  if (st != SK_KERNEL_OK) return st;
  finish_kv_kernel<<<1024, 256, 0, s>>>(dk_acc, dv_acc, p->attn.softmax_scale, static_cast<__nv_bfloat16*>(dk),
                                        static_cast<__nv_bfloat16*>(dv), n);
  du_kernel<<<static_cast<unsigned>(rows), kDuThreads, 0, s>>>(p->ranges, g_row, g_key, static_cast<int>(T), c_prefix,
                                                              frac_count, du);
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}
