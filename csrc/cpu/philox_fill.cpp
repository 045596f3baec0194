// philox_fill: Philox4x32-10 uniforms / normals, one block of four elements per SIMD lane.
#include <algorithm>

#include "philox_fill.h"

namespace rasd {
namespace cpu {

namespace {

constexpr int BATCH_BLOCKS = 64;  // blocks generated per vector loop (lanes x unroll)

// Normals of `nb` consecutive blocks, interleaved as elements (4 per block) into out.
RASD_CPU_CLONES
void normal_blocks(PhiloxStream s, uint32_t first, int nb, float* RASD_RESTRICT out) {
  float n0[BATCH_BLOCKS], n1[BATCH_BLOCKS], n2[BATCH_BLOCKS], n3[BATCH_BLOCKS];
#pragma omp simd
  for (int i = 0; i < nb; ++i) {
    uint32_t c0 = first + uint32_t(i), c1 = s.stream, c2 = s.s_lo, c3 = s.s_hi;
    philox4x32_10(c0, c1, c2, c3, s.k0, s.k1);
    box_muller(c0, c1, n0[i], n1[i]);
    box_muller(c2, c3, n2[i], n3[i]);
  }
  for (int i = 0; i < nb; ++i) {
    out[4 * i] = n0[i];
    out[4 * i + 1] = n1[i];
    out[4 * i + 2] = n2[i];
    out[4 * i + 3] = n3[i];
  }
}

RASD_CPU_CLONES
void uniform_blocks(PhiloxStream s, uint32_t first, int nb, float* RASD_RESTRICT out) {
  float u0[BATCH_BLOCKS], u1[BATCH_BLOCKS], u2[BATCH_BLOCKS], u3[BATCH_BLOCKS];
#pragma omp simd
  for (int i = 0; i < nb; ++i) {
    uint32_t c0 = first + uint32_t(i), c1 = s.stream, c2 = s.s_lo, c3 = s.s_hi;
    philox4x32_10(c0, c1, c2, c3, s.k0, s.k1);
    u0[i] = word_to_uniform(c0);
    u1[i] = word_to_uniform(c1);
    u2[i] = word_to_uniform(c2);
    u3[i] = word_to_uniform(c3);
  }
  for (int i = 0; i < nb; ++i) {
    out[4 * i] = u0[i];
    out[4 * i + 1] = u1[i];
    out[4 * i + 2] = u2[i];
    out[4 * i + 3] = u3[i];
  }
}

using BlockFn = void (*)(PhiloxStream, uint32_t, int, float*);

// Elements [e0, e0 + n): whole blocks straight into out, the partial blocks at both ends
// through a small buffer.
void fill_range(const PhiloxStream& s, uint64_t e0, int64_t n, float* out, BlockFn blocks) {
  float tmp[4 * BATCH_BLOCKS];
  while (n > 0) {
    const uint64_t block = e0 >> 2;
    const int skip = int(e0 & 3);
    if (skip == 0 && n >= 4) {
      const int nb = int(std::min<int64_t>(n >> 2, BATCH_BLOCKS));
      blocks(s, uint32_t(block), nb, out);
      e0 += 4 * nb;
      out += 4 * nb;
      n -= 4 * nb;
    } else {
      blocks(s, uint32_t(block), 1, tmp);
      const int take = int(std::min<int64_t>(n, 4 - skip));
      std::copy(tmp + skip, tmp + skip + take, out);
      e0 += take;
      out += take;
      n -= take;
    }
  }
}

}  // namespace

void normal_range(const PhiloxStream& s, uint64_t e0, int64_t n, float* out) {
  fill_range(s, e0, n, out, normals_avx512_available() ? normal_blocks_avx512 : normal_blocks);
}

void uniform_range(const PhiloxStream& s, uint64_t e0, int64_t n, float* out) {
  fill_range(s, e0, n, out, uniform_blocks);
}

void philox_fill(float* out, int64_t batch, int64_t per_sample, const int64_t* sample_index,
                 uint64_t seed, uint32_t stream, bool normal) {
  // Chunks of whole blocks, so that every chunk but the last of a row is block aligned.
  constexpr int64_t CHUNK = 16384;
  const int64_t chunks = (per_sample + CHUNK - 1) / CHUNK;
  parallel_for(batch * chunks, 0, [&](int64_t unit, float*) {
    const int64_t b = unit / chunks, c = unit % chunks;
    const PhiloxStream s = philox_stream(seed, uint64_t(sample_index[b]), stream);
    const int64_t e0 = c * CHUNK, n = std::min(CHUNK, per_sample - e0);
    float* row = out + b * per_sample + e0;
    if (normal) {
      normal_range(s, uint64_t(e0), n, row);
    } else {
      uniform_range(s, uint64_t(e0), n, row);
    }
  });
}

}  // namespace cpu
}  // namespace rasd
