#include "predict.hpp"

#include <stdexcept>

namespace wz {

namespace {

constexpr int kBits(size_t w) { return int(8 * w); }

template <class W>
void sub_words(const uint8_t* x, const uint8_t* ref, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    const W d = W(load_word<W>(x + sizeof(W) * i) - load_word<W>(ref + sizeof(W) * i));
    // zigzag: 0, -1, 1, -2... -> 0, 1, 2, 3... (arithmetic shift of the sign, done unsigned)
    const W sign = W(W(0) - W(d >> (kBits(sizeof(W)) - 1)));
    store_word<W>(out + sizeof(W) * i, W(W(d << 1) ^ sign));
  }
}

template <class W>
void unsub_words(const uint8_t* res, const uint8_t* ref, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    const W z = load_word<W>(res + sizeof(W) * i);
    const W d = W(W(z >> 1) ^ W(W(0) - W(z & 1)));
    store_word<W>(out + sizeof(W) * i, W(load_word<W>(ref + sizeof(W) * i) + d));
  }
}

inline int bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

template <class W>
size_t split_len(const uint8_t* zz, size_t n, uint8_t* lens, uint8_t* bits) {
  // Writer of up to 63 bits at a time into a byte buffer (LSB first).
  uint64_t acc = 0;
  int cnt = 0;
  size_t pos = 0;
  auto put = [&](uint64_t v, int nb) {  // nb <= 32
    acc |= v << cnt;
    cnt += nb;
    if (cnt >= 32) {
      store_word<uint32_t>(bits + pos, uint32_t(acc));
      pos += 4;
      acc >>= 32;
      cnt -= 32;
    }
  };
  for (size_t i = 0; i < n; ++i) {
    const uint64_t z = load_word<W>(zz + sizeof(W) * i);
    const int L = bit_length(z);
    lens[i] = uint8_t(L);
    if (L > 1) {
      const int nb = L - 1;
      const uint64_t low = nb == 64 ? z : z & ((uint64_t(1) << nb) - 1);
      if (nb > 32) {
        put(low & 0xffffffffu, 32);
        put(low >> 32, nb - 32);
      } else {
        put(low, nb);
      }
    }
  }
  while (cnt > 0) {
    bits[pos++] = uint8_t(acc);
    acc >>= 8;
    cnt -= 8;
  }
  return pos;
}

template <class W>
void merge_len(const uint8_t* lens, const uint8_t* bits, size_t nbytes, size_t n, uint8_t* zz) {
  uint64_t acc = 0;
  int cnt = 0;
  size_t pos = 0;
  auto get = [&](int nb) -> uint64_t {  // nb <= 32
    while (cnt < nb) {
      uint64_t b = 0;
      if (pos + 4 <= nbytes) {
        b = load_word<uint32_t>(bits + pos);
        pos += 4;
        acc |= b << cnt;
        cnt += 32;
      } else {
        if (pos >= nbytes) throw FormatError("bit-length residual: bits run out");
        acc |= uint64_t(bits[pos++]) << cnt;
        cnt += 8;
      }
    }
    const uint64_t v = acc & ((uint64_t(1) << nb) - 1);
    acc >>= nb;
    cnt -= nb;
    return v;
  };
  for (size_t i = 0; i < n; ++i) {
    const int L = lens[i];
    uint64_t z = 0;
    if (L == 1) {
      z = 1;
    } else if (L > 1) {
      const int nb = L - 1;
      uint64_t low;
      if (nb > 32) {
        low = get(32);
        low |= get(nb - 32) << 32;
      } else {
        low = get(nb);
      }
      z = (nb == 64 ? 0 : (uint64_t(1) << nb)) | low;
    }
    store_word<W>(zz + sizeof(W) * i, W(z));
  }
}

}  // namespace

void predict(Predictor p, int itemsize, const uint8_t* x, const uint8_t* ref, size_t n,
             uint8_t* out) {
  const size_t nb = n * size_t(itemsize);
  if (p == Predictor::kXor) {
    for (size_t i = 0; i < nb; ++i) out[i] = uint8_t(x[i] ^ ref[i]);
    return;
  }
  if (p != Predictor::kSub && p != Predictor::kSubLen)
    throw std::invalid_argument("predict: unknown predictor");
  switch (itemsize) {
    case 1: return sub_words<uint8_t>(x, ref, n, out);
    case 2: return sub_words<uint16_t>(x, ref, n, out);
    case 4: return sub_words<uint32_t>(x, ref, n, out);
    case 8: return sub_words<uint64_t>(x, ref, n, out);
    default: throw std::invalid_argument("predict: SUB needs an item size of 1, 2, 4 or 8");
  }
}

void unpredict(Predictor p, int itemsize, const uint8_t* res, const uint8_t* ref, size_t n,
               uint8_t* out) {
  const size_t nb = n * size_t(itemsize);
  if (p == Predictor::kXor) {
    for (size_t i = 0; i < nb; ++i) out[i] = uint8_t(res[i] ^ ref[i]);
    return;
  }
  if (p != Predictor::kSub && p != Predictor::kSubLen) throw FormatError("unknown predictor");
  switch (itemsize) {
    case 1: return unsub_words<uint8_t>(res, ref, n, out);
    case 2: return unsub_words<uint16_t>(res, ref, n, out);
    case 4: return unsub_words<uint32_t>(res, ref, n, out);
    case 8: return unsub_words<uint64_t>(res, ref, n, out);
    default: throw FormatError("SUB predictor with an item size other than 1, 2, 4 or 8");
  }
}

size_t bitlen_bytes(int itemsize, const uint8_t* lens, size_t n) {
  uint64_t total = 0;
  const int top = 8 * itemsize;
  for (size_t i = 0; i < n; ++i) {
    if (lens[i] > top) throw FormatError("bit-length residual: length too large");
    total += lens[i] > 1 ? uint64_t(lens[i] - 1) : 0;
  }
  return size_t((total + 7) / 8);
}

void bitlen_split(int itemsize, const uint8_t* zz, size_t n, uint8_t* lens, Bytes& bits) {
  bits.resize(n * size_t(itemsize) + 8);
  size_t used = 0;
  switch (itemsize) {
    case 1: used = split_len<uint8_t>(zz, n, lens, bits.data()); break;
    case 2: used = split_len<uint16_t>(zz, n, lens, bits.data()); break;
    case 4: used = split_len<uint32_t>(zz, n, lens, bits.data()); break;
    case 8: used = split_len<uint64_t>(zz, n, lens, bits.data()); break;
    default: throw std::invalid_argument("bitlen_split: item size must be 1, 2, 4 or 8");
  }
  bits.resize(used);
}

void bitlen_merge(int itemsize, const uint8_t* lens, const uint8_t* bits, size_t nbits_bytes,
                  size_t n, uint8_t* zz) {
  switch (itemsize) {
    case 1: return merge_len<uint8_t>(lens, bits, nbits_bytes, n, zz);
    case 2: return merge_len<uint16_t>(lens, bits, nbits_bytes, n, zz);
    case 4: return merge_len<uint32_t>(lens, bits, nbits_bytes, n, zz);
    case 8: return merge_len<uint64_t>(lens, bits, nbits_bytes, n, zz);
    default: throw FormatError("bit-length residual with an item size other than 1, 2, 4 or 8");
  }
}

}  // namespace wz
