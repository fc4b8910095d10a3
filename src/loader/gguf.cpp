// GGUF parsing. Everything read from the file is untrusted: every read goes through `Reader`, which
// checks the remaining bytes first, and every count is checked against what the rest of the file
// could possibly hold before anything is reserved. A corrupt file therefore costs memory only in
// proportion to the bytes actually parsed (at most kGgufMaxMetadataValues values) and always ends
// in a cvllm::Error "<file>: <problem>" naming the key or tensor and the byte offset.
#include "loader/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>

#include "util/error.h"
#include "util/mapped_file.h"

namespace cvllm {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader maps little-endian files in place");

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kLastValueType = static_cast<uint32_t>(GgufValueType::kFloat64);
// Smallest tensor info: name length (8), n_dims (4), one dimension (8), type (4), offset (8).
constexpr size_t kMinTensorInfoBytes = 32;
// A key/value holds at least: key length (8), value type (4), one byte of value.
constexpr size_t kMinKeyValueBytes = 13;
// Vectors are reserved up to this many entries from a count read in the file (~50 MB of values,
// more than any real vocabulary needs) and beyond that grow as entries are actually parsed, so a
// corrupt count costs little before the parse fails. Exact reservation matters: regrowing the
// vocabulary arrays made parsing a 100k-token vocabulary several times slower.
constexpr uint64_t kMaxReserve = uint64_t{1} << 19;

// Smallest encoding of one value of a type; bounds array lengths before anything is allocated.
size_t min_encoded_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
    case GgufValueType::kString:  // u64 length
      return 8;
    case GgufValueType::kArray:  // u32 element type + u64 length
      return 12;
  }
  return 1;
}

// Bounds-checked little-endian cursor over the file. `context` names what is being read (a metadata
// key or a tensor) so that a truncation error says where it happened.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& name)
      : data_(data), size_(size), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  // Budget of metadata values left (kGgufMaxMetadataValues in all).
  uint64_t values_left() const { return values_left_; }
  void use_values(uint64_t n) { values_left_ -= n; }

  // Set once per key or tensor (never per array element), so building the string is cheap.
  void set_context(std::string context) { context_ = std::move(context); }
  const std::string& context() const { return context_; }

  [[noreturn]] void fail(const std::string& problem) const {
    throw Error(cat(name_, ": ", problem));
  }

  void need(size_t n, std::string_view what) const {
    if (n > remaining()) [[unlikely]] {
      fail(cat("truncated: ", what, " of ", context(), " needs ", n, " bytes at offset ", pos_,
               " but the file (", size_, " bytes) has only ", remaining(), " left"));
    }
  }

  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  // The view points into the caller's buffer (or the map), which outlives the parse.
  std::string_view read_string(std::string_view what) {
    size_t start = pos_;
    uint64_t length = read<uint64_t>(what);
    if (length > remaining()) [[unlikely]] {
      fail(cat("truncated: ", what, " of ", context(), " at offset ", start, " has length ", length,
               " but the file (", size_, " bytes) has only ", remaining(), " left"));
    }
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& name_;
  std::string context_ = "header";
  uint64_t values_left_ = kGgufMaxMetadataValues;
};

GgufValueType read_value_type(Reader& r, std::string_view what) {
  size_t at = r.pos();
  uint32_t raw = r.read<uint32_t>(what);
  if (raw > kLastValueType) {
    r.fail(cat(r.context(), " has unknown ", what, " ", raw, " at offset ", at));
  }
  return static_cast<GgufValueType>(raw);
}

void set_unsigned(GgufValue& v, uint64_t x) {
  v.uint_value = x;
  v.int_value = static_cast<int64_t>(x);  // wraps above INT64_MAX; see GgufValue
}

void set_signed(GgufValue& v, int64_t x) {
  v.int_value = x;
  v.uint_value = x >= 0 ? static_cast<uint64_t>(x) : 0;
}

void read_value(Reader& r, GgufValueType type, int depth, GgufValue& out);

// `depth` counts the arrays enclosing this one; bounded so a crafted file cannot recurse deeply.
void read_array(Reader& r, int depth, GgufValue& out) {
  size_t at = r.pos();
  if (depth >= kGgufMaxArrayDepth) {
    r.fail(cat(r.context(), " nests arrays deeper than ", kGgufMaxArrayDepth, " levels at offset ",
               at));
  }
  out.array_type = read_value_type(r, "array element type");
  uint64_t count = r.read<uint64_t>("array length");
  size_t min_size = min_encoded_size(out.array_type);
  if (count > r.remaining() / min_size) {
    r.fail(cat("truncated: array of ", count, " ", gguf_value_type_name(out.array_type),
               " values of ", r.context(), " at offset ", at, " needs at least ", min_size,
               " bytes each but the file has only ", r.remaining(), " bytes left"));
  }
  if (count > r.values_left()) {
    r.fail(cat("array of ", count, " values of ", r.context(), " at offset ", at,
               " takes the file past the limit of ", kGgufMaxMetadataValues, " metadata values"));
  }
  r.use_values(count);
  out.array.reserve(std::min(count, kMaxReserve));
  for (uint64_t i = 0; i < count; ++i) {
    read_value(r, out.array_type, depth + 1, out.array.emplace_back());
  }
}

void read_value(Reader& r, GgufValueType type, int depth, GgufValue& out) {
  out.type = type;
  switch (type) {
    case GgufValueType::kUint8:
      set_unsigned(out, r.read<uint8_t>("uint8 value"));
      break;
    case GgufValueType::kInt8:
      set_signed(out, r.read<int8_t>("int8 value"));
      break;
    case GgufValueType::kUint16:
      set_unsigned(out, r.read<uint16_t>("uint16 value"));
      break;
    case GgufValueType::kInt16:
      set_signed(out, r.read<int16_t>("int16 value"));
      break;
    case GgufValueType::kUint32:
      set_unsigned(out, r.read<uint32_t>("uint32 value"));
      break;
    case GgufValueType::kInt32:
      set_signed(out, r.read<int32_t>("int32 value"));
      break;
    case GgufValueType::kUint64:
      set_unsigned(out, r.read<uint64_t>("uint64 value"));
      break;
    case GgufValueType::kInt64:
      set_signed(out, r.read<int64_t>("int64 value"));
      break;
    case GgufValueType::kFloat32:
      out.float_value = r.read<float>("float32 value");
      break;
    case GgufValueType::kFloat64:
      out.float_value = r.read<double>("float64 value");
      break;
    case GgufValueType::kBool:
      // Writers emit 0 or 1; any other byte is read as true, as C readers of the format do.
      out.bool_value = r.read<uint8_t>("bool value") != 0;
      break;
    case GgufValueType::kString:
      out.string_value = r.read_string("string");
      break;
    case GgufValueType::kArray:
      read_array(r, depth, out);
      break;
  }
}

size_t read_alignment(const GgufFile& file, const Reader& r) {
  const GgufValue* value = file.find("general.alignment");
  if (value == nullptr) return kGgufDefaultAlignment;
  if (!value->is_integer()) {
    r.fail(cat("general.alignment must be an integer, got ", gguf_value_type_name(value->type)));
  }
  bool negative = value->type != GgufValueType::kUint64 && value->int_value < 0;
  if (negative)
    r.fail(cat("general.alignment must be a nonzero power of two, got ", value->int_value));
  uint64_t alignment = value->uint_value;
  if (!std::has_single_bit(alignment)) {  // also rejects 0
    r.fail(cat("general.alignment must be a nonzero power of two, got ", alignment));
  }
  return alignment;
}

GgufTensorInfo read_tensor_info(Reader& r, size_t index, size_t alignment) {
  GgufTensorInfo info;
  r.set_context(cat("tensor #", index));
  size_t start = r.pos();
  info.name = r.read_string("name");
  r.set_context(cat("tensor '", info.name, "'"));
  const std::string& name = info.name;

  uint32_t num_dims = r.read<uint32_t>("dimension count");
  if (num_dims == 0 || num_dims > kGgufMaxDims) {
    r.fail(cat("tensor '", name, "' (info at offset ", start, ") has ", num_dims,
               " dimensions; GGUF allows 1 to ", kGgufMaxDims));
  }
  // Zero-sized dimensions (empty tensors) are allowed; the overflow check treats them as 1 so the
  // shape's strides stay representable too.
  int64_t stride_product = 1;
  for (uint32_t i = 0; i < num_dims; ++i) {
    uint64_t dim = r.read<uint64_t>("dimension");
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      r.fail(cat("tensor '", name, "' has dimension ", i, " of ", dim, " (negative as int64)"));
    }
    info.shape.push_back(static_cast<int64_t>(dim));
    if (__builtin_mul_overflow(stride_product, std::max<int64_t>(dim, 1), &stride_product)) {
      r.fail(cat("tensor '", name, "' has an element count that overflows int64"));
    }
  }

  size_t type_at = r.pos();
  uint32_t type_id = r.read<uint32_t>("type");
  std::optional<DTypeTraits> traits = dtype_traits(type_id);
  if (!traits) {
    r.fail(cat("tensor '", name, "' has unknown ggml type id ", type_id, " at offset ", type_at));
  }
  info.dtype = static_cast<DType>(type_id);
  if (info.shape[0] % traits->block_size != 0) {
    r.fail(cat("tensor '", name, "' has first dimension ", info.shape[0],
               ", not a multiple of the ", traits->name, " block size ", traits->block_size));
  }
  int64_t num_bytes = 0;
  if (__builtin_mul_overflow(info.num_elements() / traits->block_size, traits->type_size,
                             &num_bytes)) {
    r.fail(cat("tensor '", name, "' has a byte size that overflows int64"));
  }
  info.num_bytes = static_cast<size_t>(num_bytes);

  size_t offset_at = r.pos();
  info.offset = r.read<uint64_t>("data offset");
  if (info.offset % alignment != 0) {
    r.fail(cat("tensor '", name, "' has data offset ", info.offset, " (at offset ", offset_at,
               "), not a multiple of the alignment ", alignment));
  }
  return info;
}

// Every tensor's bytes lie inside the file and no two tensors share bytes.
void check_tensor_layout(const Reader& r, const std::vector<GgufTensorInfo>& tensors,
                         size_t data_offset, size_t file_size) {
  if (tensors.empty()) return;
  if (data_offset > file_size) {
    r.fail(cat("truncated: the tensor data section starts at offset ", data_offset,
               " but the file has only ", file_size, " bytes"));
  }
  size_t data_size = file_size - data_offset;
  std::vector<const GgufTensorInfo*> by_offset;
  by_offset.reserve(tensors.size());
  for (const GgufTensorInfo& t : tensors) {
    if (t.offset > data_size || t.num_bytes > data_size - t.offset) {
      r.fail(cat("truncated: tensor '", t.name, "' needs ", t.num_bytes, " bytes at data offset ",
                 t.offset, " (file offset ", data_offset, " + ", t.offset,
                 ") but the data section has only ", data_size, " bytes"));
    }
    if (t.num_bytes > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    const GgufTensorInfo& cur = *by_offset[i];
    if (prev.offset + prev.num_bytes > cur.offset) {
      r.fail(cat("tensors '", prev.name, "' (data bytes ", prev.offset, "..",
                 prev.offset + prev.num_bytes, ") and '", cur.name, "' (from ", cur.offset,
                 ") overlap"));
    }
  }
}

std::string describe_type(const GgufValue& v) {
  if (v.type != GgufValueType::kArray) return std::string(gguf_value_type_name(v.type));
  return cat("array of ", gguf_value_type_name(v.array_type));
}

bool is_integer_type(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

bool is_float_type(GgufValueType t) {
  return t == GgufValueType::kFloat32 || t == GgufValueType::kFloat64;
}

bool fits_int64(const GgufValue& v) {
  return v.type != GgufValueType::kUint64 ||
         v.uint_value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

double as_double(const GgufValue& v) {
  if (is_float_type(v.type)) return v.float_value;
  if (v.type == GgufValueType::kUint64) return static_cast<double>(v.uint_value);
  return static_cast<double>(v.int_value);
}

struct GgufHeader {
  uint32_t version = 0;
  uint64_t tensor_count = 0;
  uint64_t kv_count = 0;
};

// Magic, version and counts; the counts are bounded by what the rest of the file could hold.
GgufHeader read_header(Reader& r) {
  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kGgufMagic) {
    std::ostringstream bytes;  // in file order, as a hex dump shows them
    for (int i = 0; i < 4; ++i) {
      bytes << (i ? " " : "") << std::hex << std::setw(2) << std::setfill('0')
            << ((magic >> (8 * i)) & 0xff);
    }
    r.fail(cat("not a GGUF file (starts with bytes ", bytes.str(), ", expected \"GGUF\")"));
  }
  GgufHeader h;
  h.version = r.read<uint32_t>("version");
  if (h.version != 2 && h.version != 3) {
    // A big-endian file shows its version byte-swapped; say so instead of a huge number.
    uint32_t swapped_version = __builtin_bswap32(h.version);
    bool swapped = swapped_version == 2 || swapped_version == 3;
    r.fail(cat("unsupported version ", h.version,
               swapped ? " (a big-endian GGUF file, which is not supported)"
                       : " (only GGUF versions 2 and 3 are supported)"));
  }
  h.tensor_count = r.read<uint64_t>("tensor count");
  h.kv_count = r.read<uint64_t>("metadata count");
  if (h.kv_count > r.remaining() / kMinKeyValueBytes) {
    r.fail(cat("truncated or corrupt: metadata count ", h.kv_count, " needs at least ",
               kMinKeyValueBytes, " bytes each but the file has only ", r.remaining(),
               " bytes left"));
  }
  if (h.tensor_count > r.remaining() / kMinTensorInfoBytes) {
    r.fail(cat("truncated or corrupt: tensor count ", h.tensor_count, " needs at least ",
               kMinTensorInfoBytes, " bytes each but the file has only ", r.remaining(),
               " bytes left"));
  }
  return h;
}

}  // namespace

std::string_view gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
      return "uint8";
    case GgufValueType::kInt8:
      return "int8";
    case GgufValueType::kUint16:
      return "uint16";
    case GgufValueType::kInt16:
      return "int16";
    case GgufValueType::kUint32:
      return "uint32";
    case GgufValueType::kInt32:
      return "int32";
    case GgufValueType::kFloat32:
      return "float32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kUint64:
      return "uint64";
    case GgufValueType::kInt64:
      return "int64";
    case GgufValueType::kFloat64:
      return "float64";
  }
  return "unknown";
}

bool GgufValue::is_integer() const {
  return is_integer_type(type);
}
bool GgufValue::is_float() const {
  return is_float_type(type);
}

int64_t GgufTensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // cannot overflow: checked when the file was parsed
  return n;
}

std::shared_ptr<GgufFile> GgufFile::open(const std::string& path) {
  auto mapping = std::make_shared<MappedFile>(path);
  std::shared_ptr<GgufFile> file(new GgufFile());
  file->mapping_ = mapping;
  file->data_ = mapping->data();
  file->size_ = mapping->size();
  file->name_ = path;
  file->parse_all();
  return file;
}

std::shared_ptr<GgufFile> GgufFile::parse(const uint8_t* data, size_t size,
                                          const std::string& name) {
  std::shared_ptr<GgufFile> file(new GgufFile());
  file->data_ = data;
  file->size_ = size;
  file->name_ = name;
  file->parse_all();
  return file;
}

void GgufFile::parse_all() {
  Reader r(data_, size_, name_);
  auto [version, tensor_count, kv_count] = read_header(r);
  version_ = version;
  metadata_.reserve(std::min(kv_count, kMaxReserve));
  metadata_index_.reserve(std::min(kv_count, kMaxReserve));
  for (uint64_t i = 0; i < kv_count; ++i) {
    r.set_context(cat("metadata key #", i));
    size_t start = r.pos();
    std::string_view key = r.read_string("name");
    r.set_context(cat("metadata key '", key, "'"));
    if (metadata_index_.find(key) != metadata_index_.end()) {
      r.fail(cat("duplicate metadata key '", key, "' at offset ", start));
    }
    if (r.values_left() == 0) {
      r.fail(cat("metadata key '", key, "' takes the file past the limit of ",
                 kGgufMaxMetadataValues, " metadata values"));
    }
    r.use_values(1);
    GgufValueType type = read_value_type(r, "value type");
    metadata_.emplace_back(std::string(key), GgufValue());
    read_value(r, type, 0, metadata_.back().second);
    metadata_index_.emplace(metadata_.back().first, metadata_.size() - 1);
  }

  alignment_ = read_alignment(*this, r);
  tensors_.reserve(std::min(tensor_count, kMaxReserve));
  tensor_index_.reserve(std::min(tensor_count, kMaxReserve));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    size_t start = r.pos();
    GgufTensorInfo info = read_tensor_info(r, i, alignment_);
    if (tensor_index_.find(info.name) != tensor_index_.end()) {
      r.fail(cat("duplicate tensor name '", info.name, "' at offset ", start));
    }
    tensors_.push_back(std::move(info));
    tensor_index_.emplace(tensors_.back().name, tensors_.size() - 1);
  }
  r.set_context("tensor data");

  // The data section starts at the next multiple of the alignment (overflow-safe round-up).
  size_t pos = r.pos();
  size_t pad = (alignment_ - pos % alignment_) % alignment_;
  if (pad > std::numeric_limits<size_t>::max() - pos) {
    r.fail(cat("alignment ", alignment_, " puts the data section past any possible file size"));
  }
  data_offset_ = pos + pad;
  check_tensor_layout(r, tensors_, data_offset_, size_);
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

namespace {

[[noreturn]] void wrong_type(const std::string& file, std::string_view key, const GgufValue& v,
                             std::string_view expected) {
  throw Error(
      cat(file, ": metadata key '", key, "' is ", describe_type(v), ", expected ", expected));
}

}  // namespace

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::kString) wrong_type(name_, key, *v, "string");
  return v->string_value;
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_integer()) wrong_type(name_, key, *v, "an integer");
  if (!fits_int64(*v)) {
    throw Error(
        cat(name_, ": metadata key '", key, "' value ", v->uint_value, " does not fit in int64"));
  }
  return v->int_value;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_float() && !v->is_integer()) wrong_type(name_, key, *v, "a number");
  return as_double(*v);
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::kBool) wrong_type(name_, key, *v, "bool");
  return v->bool_value;
}

std::optional<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::kArray || v->array_type != GgufValueType::kString) {
    wrong_type(name_, key, *v, "array of string");
  }
  std::vector<std::string> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(e.string_value);
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::kArray || !is_integer_type(v->array_type)) {
    wrong_type(name_, key, *v, "array of integers");
  }
  std::vector<int64_t> out;
  out.reserve(v->array.size());
  for (size_t i = 0; i < v->array.size(); ++i) {
    const GgufValue& e = v->array[i];
    if (!fits_int64(e)) {
      throw Error(cat(name_, ": metadata key '", key, "' element ", i, " value ", e.uint_value,
                      " does not fit in int64"));
    }
    out.push_back(e.int_value);
  }
  return out;
}

std::optional<std::vector<float>> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::kArray ||
      (!is_float_type(v->array_type) && !is_integer_type(v->array_type))) {
    wrong_type(name_, key, *v, "array of numbers");
  }
  std::vector<float> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(static_cast<float>(as_double(e)));
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* GgufFile::tensor_data(const GgufTensorInfo& info) const {
  // Guards against an info that came from another file; this file's infos were checked at parse.
  CVLLM_CHECK(data_offset_ <= size_ && info.offset <= size_ - data_offset_ &&
                  info.num_bytes <= size_ - data_offset_ - info.offset,
              name_, ": tensor '", info.name, "' does not lie inside this file");
  return data_ + data_offset_ + info.offset;
}

}  // namespace cvllm
