// Safetensors writer and validating reader (safetensors.h).
#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "util/check.h"

namespace sk::io {

namespace {

struct DtypeName {
  const char* name;
  int bits;
};
// Every dtype name the reference implementation knows, with its element size in bits.
constexpr DtypeName kDtypes[] = {
    {"BOOL", 8},     {"F4", 4},   {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8},    {"I8", 8},   {"F8_E5M2", 8},
    {"F8_E4M3", 8},  {"F8_E8M0", 8}, {"I16", 16}, {"U16", 16},    {"F16", 16},  {"BF16", 16}, {"I32", 32},
    {"U32", 32},     {"F32", 32}, {"F64", 64},    {"I64", 64},    {"U64", 64},  {"C64", 64},
};

// True if [p, p + n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool valid_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

size_t as_size(const nlohmann::json& v, const std::string& file, const std::string& what) {
  SK_CHECK(v.is_number_unsigned(), "safetensors ", file, ": ", what, " is ", v.dump(),
           ", not a non-negative integer");
  return v.get<size_t>();
}

TensorEntry parse_entry(const std::string& name, const nlohmann::json& j, const std::string& file) {
  const std::string where = "tensor '" + name + "'";
  SK_CHECK(j.is_object(), "safetensors ", file, ": ", where, " is not an object in the header");
  TensorEntry e;
  e.name = name;
  SK_CHECK(j.contains("dtype") && j["dtype"].is_string(), "safetensors ", file, ": ", where, " has no dtype string");
  e.dtype = j["dtype"].get<std::string>();
  SK_CHECK(safetensors_dtype_bits(e.dtype).has_value(), "safetensors ", file, ": ", where, " has unknown dtype '",
           e.dtype, "'");
  SK_CHECK(j.contains("shape") && j["shape"].is_array(), "safetensors ", file, ": ", where, " has no shape array");
  for (const auto& d : j["shape"]) {
    const size_t v = as_size(d, file, where + " shape entry");
    SK_CHECK(v <= size_t(INT64_MAX), "safetensors ", file, ": ", where, " shape entry ", v, " is too large");
    e.shape.push_back(static_cast<int64_t>(v));
  }
  SK_CHECK(j.contains("data_offsets") && j["data_offsets"].is_array() && j["data_offsets"].size() == 2,
           "safetensors ", file, ": ", where, " needs data_offsets [begin, end]");
  e.begin = as_size(j["data_offsets"][0], file, where + " data_offsets begin");
  e.end = as_size(j["data_offsets"][1], file, where + " data_offsets end");
  return e;
}

// Why a file that is not safetensors is not, when its first bytes say so ("" otherwise): the
// formats users meet in model directories in place of model.safetensors.
std::string not_safetensors_hint(const uint8_t* d, size_t size) {
  auto starts = [&](const char* p, size_t n) { return size >= n && std::memcmp(d, p, n) == 0; };
  static const char kLfs[] = "version https://git-lfs.github.com/spec/v1";
  if (starts(kLfs, sizeof(kLfs) - 1))
    return "it is a git-LFS pointer file, not the weights: fetch them with `git lfs pull` in the clone (or download "
           "the file itself)";
  if (starts("PK\x03\x04", 4))
    return "it is a zip archive (PyTorch's torch.save format, as pytorch_model.bin): convert it with transformers: "
           "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True)";
  if (size >= 2 && d[0] == 0x80 && d[1] >= 2 && d[1] <= 5)
    return "it is a Python pickle (the legacy torch.save format of pytorch_model.bin): convert it with transformers: "
           "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True)";
  return "";
}

// IEEE half -> float (exact).
float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000 | (man << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: man x 2^-24
    const float v = std::ldexp(float(man), -24);
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::string header_json(std::vector<TensorEntry>& entries, const StringMap& metadata) {
  nlohmann::json h = nlohmann::json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  for (const auto& e : entries)
    h[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  std::string s = h.dump();
  s.append((8 - s.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  return s;
}

// The tensors on the CPU, contiguous, in write order (element size descending, stable) with
// their entries (offsets assigned).
struct Plan {
  std::vector<Tensor> data;
  std::vector<TensorEntry> entries;
  std::string header;
};

Plan plan_write(const NamedTensors& tensors, const StringMap& metadata, const std::string& file) {
  std::set<std::string> names;
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    order[i] = i;
    const std::string& n = tensors[i].first;
    SK_CHECK(n != "__metadata__", "safetensors ", file, ": a tensor cannot be named __metadata__");
    SK_CHECK(names.insert(n).second, "safetensors ", file, ": tensor name '", n, "' given twice");
    SK_CHECK(tensors[i].second.defined(), "safetensors ", file, ": tensor '", n, "' is undefined");
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });
  Plan p;
  size_t offset = 0;
  for (size_t i : order) {
    const Tensor& t = tensors[i].second;
    TensorEntry e;
    e.name = tensors[i].first;
    e.dtype = safetensors_dtype(t.dtype());
    e.shape = t.shape();
    e.begin = offset;
    e.end = offset + t.nbytes();
    offset = e.end;
    p.data.push_back(t.detach().cpu().contiguous());
    p.entries.push_back(std::move(e));
  }
  p.header = header_json(p.entries, metadata);
  return p;
}

}  // namespace

std::string safetensors_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U16: return "U16";
  }
  SK_FAIL("safetensors: dtype ", dtype_name(t), " has no safetensors name");
}

std::optional<DType> dtype_from_safetensors(const std::string& name) {
  for (DType t : {DType::F32, DType::BF16, DType::F64, DType::I32, DType::I64, DType::U16})
    if (safetensors_dtype(t) == name) return t;
  return std::nullopt;
}

std::optional<int> safetensors_dtype_bits(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.bits;
  return std::nullopt;
}

void write_safetensors(const std::string& path, const NamedTensors& tensors, const StringMap& metadata, bool sync) {
  Plan p = plan_write(tensors, metadata, path);
  const std::string label = "safetensors " + path;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SK_CHECK(fd >= 0, label, ": cannot create: ", util::errno_text());
  try {
    const uint64_t n = p.header.size();  // little-endian on every platform we build for
    util::write_all(fd, &n, 8, label);
    util::write_all(fd, p.header.data(), p.header.size(), label);
    for (const Tensor& t : p.data) util::write_all(fd, t.data_ptr(), t.nbytes(), label);
    if (sync) util::fsync_fd(fd, label);
  } catch (...) {
    ::close(fd);
    throw;
  }
  SK_CHECK(::close(fd) == 0, label, ": close failed: ", util::errno_text());
}

std::string safetensors_bytes(const NamedTensors& tensors, const StringMap& metadata) {
  Plan p = plan_write(tensors, metadata, "(in memory)");
  std::string out(8, '\0');
  const uint64_t n = p.header.size();
  std::memcpy(out.data(), &n, 8);
  out += p.header;
  for (const Tensor& t : p.data) out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
  return out;
}

SafetensorsLayout parse_safetensors(const uint8_t* data, size_t size, const std::string& file) {
  SK_CHECK(size >= 8, "safetensors ", file, ": truncated: ", size, " bytes, shorter than the 8-byte header length");
  uint64_t n;
  std::memcpy(&n, data, 8);
  if (n > kSafetensorsMaxHeader || n > size - 8) {
    const std::string hint = not_safetensors_hint(data, size);
    SK_CHECK(hint.empty(), "safetensors ", file, ": not a safetensors file: ", hint);
  }
  SK_CHECK(n <= kSafetensorsMaxHeader, "safetensors ", file, ": header length ", n, " is above the limit of ",
           kSafetensorsMaxHeader, " bytes (not a safetensors file?)");
  SK_CHECK(n <= size - 8, "safetensors ", file, ": truncated: the header length is ", n, " bytes but only ", size - 8,
           " follow");
  const uint8_t* h = data + 8;
  SK_CHECK(valid_utf8(h, n), "safetensors ", file, ": the header is not valid UTF-8");
  SK_CHECK(n > 0 && h[0] == '{', "safetensors ", file, ": the header does not start with '{'");
  const nlohmann::json j = nlohmann::json::parse(h, h + n, nullptr, /*allow_exceptions=*/false);
  SK_CHECK(!j.is_discarded() && j.is_object(), "safetensors ", file, ": the header is not a JSON object");

  SafetensorsLayout out;
  out.data_start = 8 + n;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      SK_CHECK(value.is_object(), "safetensors ", file, ": __metadata__ is not an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        SK_CHECK(mv.is_string(), "safetensors ", file, ": __metadata__ value of '", mk, "' is not a string");
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    out.entries.push_back(parse_entry(key, value, file));
  }
  std::sort(out.entries.begin(), out.entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  size_t expected_begin = 0;
  for (const TensorEntry& e : out.entries) {
    SK_CHECK(e.begin == expected_begin && e.end >= e.begin, "safetensors ", file, ": tensor '", e.name,
             "' has data_offsets [", e.begin, ", ", e.end, "] but the data must continue at byte ", expected_begin,
             " (holes or overlaps between tensors)");
    expected_begin = e.end;
    size_t elements = 1, bits = 0;
    for (int64_t d : e.shape)
      SK_CHECK(!__builtin_mul_overflow(elements, static_cast<size_t>(d), &elements), "safetensors ", file,
               ": tensor '", e.name, "' shape ", shape_str(e.shape), " overflows");
    SK_CHECK(!__builtin_mul_overflow(elements, size_t(*safetensors_dtype_bits(e.dtype)), &bits), "safetensors ", file,
             ": tensor '", e.name, "' shape ", shape_str(e.shape), " overflows");
    SK_CHECK(bits % 8 == 0, "safetensors ", file, ": tensor '", e.name, "' (", e.dtype, ", ", elements,
             " elements) does not fill whole bytes");
    SK_CHECK(e.end - e.begin == bits / 8, "safetensors ", file, ": tensor '", e.name, "' ", e.dtype, " ",
             shape_str(e.shape), " needs ", bits / 8, " bytes but data_offsets [", e.begin, ", ", e.end, "] give ",
             e.end - e.begin);
  }
  const size_t data_bytes = size - out.data_start;
  SK_CHECK(expected_begin == data_bytes, "safetensors ", file, ": the tensors cover ", expected_begin,
           " bytes of data but the file has ", data_bytes, " after the header (",
           expected_begin > data_bytes ? "truncated" : "trailing bytes", ")");
  return out;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = util::MappedFile::open(path, "safetensors " + path);
  f.layout_ = parse_safetensors(f.file_.data(), f.file_.size(), path);
  for (size_t i = 0; i < f.layout_.entries.size(); ++i) f.index_[f.layout_.entries[i].name] = i;
  return f;
}

const TensorEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  SK_CHECK(it != index_.end(), "safetensors ", path(), ": no tensor named '", name, "'");
  return layout_.entries[it->second];
}

std::pair<const uint8_t*, size_t> SafetensorsFile::raw(const std::string& name) const {
  const TensorEntry& e = entry(name);
  return {file_.data() + layout_.data_start + e.begin, e.end - e.begin};
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorEntry& e = entry(name);
  const std::optional<DType> t = dtype_from_safetensors(e.dtype);
  SK_CHECK(t.has_value(), "safetensors ", path(), ": tensor '", name, "' has dtype ", e.dtype,
           ", which sparsek tensors do not support (F32, BF16, F64, I32, I64, U16)");
  Tensor out = Tensor::empty(e.shape, *t);
  const auto [bytes, n] = raw(name);
  if (n > 0) std::memcpy(out.data_ptr(), bytes, n);
  return out;
}

Tensor SafetensorsFile::tensor_as(const std::string& name, DType want) const {
  const TensorEntry& e = entry(name);
  SK_CHECK(is_floating(want), "safetensors ", path(), ": tensor_as('", name, "') needs a floating dtype, got ",
           dtype_name(want));
  if (e.dtype == "F16") {
    const auto [bytes, n] = raw(name);
    Tensor f = Tensor::empty(e.shape, DType::F32);
    float* out = static_cast<float*>(f.data_ptr());
    for (size_t i = 0; i < n / 2; ++i) {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      out[i] = half_to_float(h);
    }
    return want == DType::F32 ? f : f.to(want);
  }
  const std::optional<DType> t = dtype_from_safetensors(e.dtype);
  SK_CHECK(t && is_floating(*t), "safetensors ", path(), ": tensor '", name, "' has dtype ", e.dtype,
           ", not a floating dtype sparsek converts (F64, F32, F16, BF16)");
  Tensor stored = tensor(name);
  return *t == want ? stored : stored.to(want);
}

void SafetensorsFile::read_into(const std::string& name, Tensor& dst, bool convert) const {
  const TensorEntry& e = entry(name);
  SK_CHECK(e.shape == dst.shape(), "safetensors ", path(), ": tensor '", name, "' has shape ", shape_str(e.shape),
           ", expected ", shape_str(dst.shape()));
  const std::string want = safetensors_dtype(dst.dtype());
  if (e.dtype == want) {
    dst.copy_(tensor(name));
    return;
  }
  const std::optional<DType> t = dtype_from_safetensors(e.dtype);
  SK_CHECK(convert && (e.dtype == "F16" || (t && is_floating(*t))) && is_floating(dst.dtype()), "safetensors ", path(),
           ": tensor '", name, "' has dtype ", e.dtype, ", expected ", want);
  dst.copy_(tensor_as(name, dst.dtype()));
}

}  // namespace sk::io
