// torch.save zip checkpoints: the zip directory reader, the restricted unpickler, and the
// file / directory / weight-source classes of torch_checkpoint.h.
#include "loader/torch_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/mapped_file.h"

namespace cvllm {
namespace {

// ---------------------------------------------------------------------------------------------
// Zip central directory (APPNOTE.TXT): end of central directory record, optional zip64 records,
// central-directory file headers, local file headers. Only what PyTorch writes is accepted:
// one disk, stored (method 0) unencrypted entries.

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEndSize = 22, kZip64EndSize = 56, kZip64LocatorSize = 20;
constexpr size_t kCentralHeaderSize = 46, kLocalHeaderSize = 30;

uint64_t read_le(const uint8_t* p, int num_bytes) {
  uint64_t v = 0;
  for (int i = num_bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // first byte of the stored data in the file
  uint64_t size = 0;
};

struct ZipDirectory {
  uint64_t num_entries = 0;
  uint64_t offset = 0;  // central directory [offset, offset + size)
  uint64_t size = 0;
  uint64_t end = 0;  // where the end records start: the directory must lie before it
};

class ZipReader {
 public:
  ZipReader(const uint8_t* data, size_t size, const std::string& file)
      : data_(data), size_(size), file_(file) {}

  std::vector<ZipEntry> read_entries() {
    ZipDirectory dir = find_directory();
    if (dir.num_entries > kTorchMaxZipEntries) {
      fail(cat("the zip lists ", dir.num_entries, " entries (at most ", kTorchMaxZipEntries, ")"));
    }
    if (dir.offset > dir.end || dir.size > dir.end - dir.offset) {
      fail("the zip central directory lies outside the file");
    }
    std::vector<ZipEntry> entries;
    uint64_t pos = dir.offset;
    for (uint64_t i = 0; i < dir.num_entries; ++i) {
      entries.push_back(read_central_entry(pos, dir));
    }
    return entries;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw Error(cat(file_, ": ", what)); }

  ZipDirectory find_directory() const {
    if (size_ < kEndSize) fail("too short for a zip file");
    // The end record is last, followed only by a comment of at most 65535 bytes.
    const size_t lowest = size_ - kEndSize > 0xFFFF ? size_ - kEndSize - 0xFFFF : 0;
    for (size_t at = size_ - kEndSize + 1; at-- > lowest;) {
      if (read_le(data_ + at, 4) != kEndSig) continue;
      if (at + kEndSize + read_le(data_ + at + 20, 2) != size_) continue;  // comment must fit
      ZipDirectory dir;
      const uint64_t disk = read_le(data_ + at + 4, 2), cd_disk = read_le(data_ + at + 6, 2);
      const uint64_t on_disk = read_le(data_ + at + 8, 2);
      dir.num_entries = read_le(data_ + at + 10, 2);
      dir.size = read_le(data_ + at + 12, 4);
      dir.offset = read_le(data_ + at + 16, 4);
      dir.end = at;
      if (dir.num_entries == 0xFFFF || dir.size == 0xFFFFFFFF || dir.offset == 0xFFFFFFFF) {
        return read_zip64_end(at);
      }
      if (disk != 0 || cd_disk != 0 || on_disk != dir.num_entries) {
        fail("multi-disk zip archives are not supported");
      }
      return dir;
    }
    fail("no zip end-of-central-directory record: not a torch.save zip checkpoint");
  }

  ZipDirectory read_zip64_end(size_t end_at) const {
    if (end_at < kZip64LocatorSize ||
        read_le(data_ + end_at - kZip64LocatorSize, 4) != kZip64LocatorSig) {
      fail("zip64 fields without a zip64 end-of-central-directory locator");
    }
    const uint8_t* loc = data_ + end_at - kZip64LocatorSize;
    const uint64_t record = read_le(loc + 8, 8);
    if (read_le(loc + 4, 4) != 0 || read_le(loc + 16, 4) > 1) {
      fail("multi-disk zip archives are not supported");
    }
    if (record > end_at - kZip64LocatorSize ||
        end_at - kZip64LocatorSize - record < kZip64EndSize ||
        read_le(data_ + record, 4) != kZip64EndSig) {
      fail("the zip64 end-of-central-directory record is missing or outside the file");
    }
    const uint8_t* r = data_ + record;
    ZipDirectory dir;
    if (read_le(r + 16, 4) != 0 || read_le(r + 20, 4) != 0 ||
        read_le(r + 24, 8) != read_le(r + 32, 8)) {
      fail("multi-disk zip archives are not supported");
    }
    dir.num_entries = read_le(r + 32, 8);
    dir.size = read_le(r + 40, 8);
    dir.offset = read_le(r + 48, 8);
    dir.end = record;
    return dir;
  }

  // The zip64 "extended information" extra field replaces each 32-bit field that is 0xFFFFFFFF,
  // in the order uncompressed size, compressed size, local header offset.
  void read_zip64_extra(const uint8_t* extra, size_t extra_len, const std::string& name,
                        uint64_t* sizes[3]) const {
    size_t pos = 0;
    while (pos + 4 <= extra_len) {
      const uint64_t id = read_le(extra + pos, 2), len = read_le(extra + pos + 2, 2);
      if (pos + 4 + len > extra_len)
        fail(cat("zip entry '", name, "': extra field runs past its end"));
      if (id == 0x0001) {
        size_t at = pos + 4;
        for (int i = 0; i < 3; ++i) {
          if (*sizes[i] != 0xFFFFFFFF) continue;
          if (at + 8 > pos + 4 + len) fail(cat("zip entry '", name, "': short zip64 extra field"));
          *sizes[i] = read_le(extra + at, 8);
          at += 8;
        }
        return;
      }
      pos += 4 + len;
    }
    for (int i = 0; i < 3; ++i) {
      if (*sizes[i] == 0xFFFFFFFF) fail(cat("zip entry '", name, "': missing zip64 extra field"));
    }
  }

  ZipEntry read_central_entry(uint64_t& pos, const ZipDirectory& dir) const {
    const uint64_t dir_end = dir.offset + dir.size;
    if (pos > dir_end || dir_end - pos < kCentralHeaderSize ||
        read_le(data_ + pos, 4) != kCentralHeaderSig) {
      fail("truncated or corrupt zip central directory");
    }
    const uint8_t* h = data_ + pos;
    const uint64_t flags = read_le(h + 8, 2), method = read_le(h + 10, 2);
    uint64_t compressed = read_le(h + 20, 4), size = read_le(h + 24, 4);
    const uint64_t name_len = read_le(h + 28, 2), extra_len = read_le(h + 30, 2);
    const uint64_t comment_len = read_le(h + 32, 2);
    uint64_t local = read_le(h + 42, 4);
    if (dir_end - pos - kCentralHeaderSize < name_len + extra_len + comment_len) {
      fail("truncated zip central directory entry");
    }
    ZipEntry e;
    e.name.assign(reinterpret_cast<const char*>(h + kCentralHeaderSize), name_len);
    uint64_t* sizes[3] = {&size, &compressed, &local};
    read_zip64_extra(h + kCentralHeaderSize + name_len, extra_len, e.name, sizes);
    pos += kCentralHeaderSize + name_len + extra_len + comment_len;
    if (flags & 0x1) fail(cat("zip entry '", e.name, "' is encrypted"));
    if (method != 0 || compressed != size) {
      fail(cat("zip entry '", e.name, "' is compressed (method ", method,
               "); torch.save stores entries uncompressed, so the data can be mapped in place: "
               "re-save the checkpoint with torch.save"));
    }
    e.size = size;
    e.data_offset = locate_data(local, e, dir);
    return e;
  }

  // Checks the local header against the central entry and returns where the data starts.
  uint64_t locate_data(uint64_t local, const ZipEntry& e, const ZipDirectory& dir) const {
    if (local > dir.offset || dir.offset - local < kLocalHeaderSize ||
        read_le(data_ + local, 4) != kLocalHeaderSig) {
      fail(cat("zip entry '", e.name, "': bad local header offset ", local));
    }
    const uint8_t* h = data_ + local;
    const uint64_t name_len = read_le(h + 26, 2), extra_len = read_le(h + 28, 2);
    if (read_le(h + 8, 2) != 0) fail(cat("zip entry '", e.name, "': local header says compressed"));
    const uint64_t data = local + kLocalHeaderSize + name_len + extra_len;
    if (data > dir.offset || name_len != e.name.size() ||
        std::memcmp(h + kLocalHeaderSize, e.name.data(), name_len) != 0) {
      fail(cat("zip entry '", e.name, "': local header does not match the central directory"));
    }
    if (e.size > dir.offset - data) {
      fail(cat("zip entry '", e.name, "': ", e.size, " bytes at offset ", data,
               " run past the data area (", dir.offset, " bytes)"));
    }
    return data;
  }

  const uint8_t* data_;
  size_t size_;
  const std::string& file_;
};

// ---------------------------------------------------------------------------------------------
// Restricted unpickler. Values live in an arena and refer to each other by index, so the memo,
// shared references and even cycles (legal in pickles) need no ownership graph; nothing recurses.

struct StorageType {
  std::string_view name;
  std::optional<DType> dtype;
  int element_size;
};

constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", DType::kF32, 4},     {"HalfStorage", DType::kF16, 2},
    {"BFloat16Storage", DType::kBF16, 2}, {"DoubleStorage", std::nullopt, 8},
    {"LongStorage", std::nullopt, 8},     {"IntStorage", std::nullopt, 4},
    {"ShortStorage", std::nullopt, 2},    {"CharStorage", std::nullopt, 1},
    {"ByteStorage", std::nullopt, 1},     {"BoolStorage", std::nullopt, 1}};

enum class Kind : uint8_t {
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kTuple,
  kList,
  kDict,
  kGlobal,
  kStorage,
  kTensor
};

enum class Callable : uint8_t { kOrderedDict, kRebuildTensorV2, kRebuildParameter, kStorageType };

struct Value {
  Kind kind = Kind::kNone;
  int64_t i = 0;  // int / bool; kGlobal: Callable; kStorage: storage index; kTensor: tensor index
  int64_t j = 0;  // kGlobal kStorageType: index in kStorageTypes
  double f = 0.0;
  std::string s;                // kString
  std::vector<uint32_t> items;  // kTuple / kList; kDict: key, value, key, value, ...
};

// Objects one pickle may create: a state dict needs ~20 per tensor, so this allows ~200k tensors
// while bounding memory (~100 bytes each) for a hostile file.
constexpr size_t kMaxValues = size_t{4} << 20;

struct PickledStorage {
  std::string key;
  size_t type = 0;  // index in kStorageTypes
  int64_t numel = 0;
  const ZipEntry* entry = nullptr;
};

struct PickledTensor {
  size_t storage = 0;
  int64_t offset = 0;
  std::vector<int64_t> shape;
};

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const std::string& file,
            const std::function<const ZipEntry*(const std::string& key)>& find_storage)
      : p_(data), end_(data + size), file_(file), find_storage_(find_storage) {}

  // Runs to STOP; returns the top-level value.
  uint32_t run();
  const Value& at(uint32_t v) const { return values_[v]; }
  const std::vector<PickledStorage>& storages() const { return storages_; }
  const std::vector<PickledTensor>& tensors() const { return tensors_; }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(cat(file_, ": data.pkl at byte ", pos(), ": ", what));
  }
  size_t pos() const { return static_cast<size_t>(p_ - start_) - (p_ > start_ ? 1 : 0); }
  const uint8_t* take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) fail("truncated pickle");
    const uint8_t* at = p_;
    p_ += n;
    return at;
  }
  uint32_t push_new(Value v) {
    if (values_.size() >= kMaxValues) fail(cat("more than ", kMaxValues, " objects"));
    values_.push_back(std::move(v));
    stack_.push_back(static_cast<uint32_t>(values_.size() - 1));
    return stack_.back();
  }
  uint32_t pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  uint32_t top() const {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  std::vector<uint32_t> pop_to_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    std::vector<uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()),
                                stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  Value& mutable_container(uint32_t v, Kind kind, const char* op) {
    if (values_[v].kind != kind)
      fail(cat(op, " on something that is not a ", kind == Kind::kDict ? "dict" : "list"));
    return values_[v];
  }
  void step(uint8_t op);
  void step_container(uint8_t op);
  void push_global(const std::string& module, const std::string& name);
  std::string read_line();
  void push_int_bytes(const uint8_t* p, size_t n);
  void push_int(int64_t i) {
    Value v;
    v.kind = Kind::kInt;
    v.i = i;
    push_new(std::move(v));
  }
  void memo_put(uint64_t index);
  void memo_get(uint64_t index);
  void persistent_load();
  void reduce();
  uint32_t rebuild_tensor(const Value& args);
  int64_t as_int(uint32_t v, const char* what) const {
    if (at(v).kind != Kind::kInt) fail(cat(what, " is not an integer"));
    return at(v).i;
  }
  std::vector<int64_t> int_tuple(uint32_t v, const char* what) const;

  const uint8_t* p_;
  const uint8_t* const end_;
  const uint8_t* const start_ = p_;
  const std::string& file_;
  std::function<const ZipEntry*(const std::string&)> find_storage_;
  std::vector<Value> values_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;  // stack heights at each MARK
  std::unordered_map<uint64_t, uint32_t> memo_;
  std::vector<PickledStorage> storages_;
  std::map<std::string, size_t> storage_by_key_;
  std::vector<PickledTensor> tensors_;
  bool stopped_ = false;
};

std::string Unpickler::read_line() {
  std::string line;
  while (true) {
    char c = static_cast<char>(*take(1));
    if (c == '\n') return line;
    if (line.size() >= 256) fail("GLOBAL name longer than 256 bytes");
    line.push_back(c);
  }
}

void Unpickler::push_global(const std::string& module, const std::string& name) {
  Value v;
  v.kind = Kind::kGlobal;
  if (module == "collections" && name == "OrderedDict") {
    v.i = static_cast<int64_t>(Callable::kOrderedDict);
  } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    v.i = static_cast<int64_t>(Callable::kRebuildTensorV2);
  } else if (module == "torch._utils" && name == "_rebuild_parameter") {
    v.i = static_cast<int64_t>(Callable::kRebuildParameter);
  } else if (module == "torch" && name.size() > 7 && name.ends_with("Storage")) {
    v.i = static_cast<int64_t>(Callable::kStorageType);
    v.j = -1;
    for (size_t t = 0; t < std::size(kStorageTypes); ++t) {
      if (kStorageTypes[t].name == name) v.j = static_cast<int64_t>(t);
    }
    if (v.j < 0) fail(cat("storage type torch.", name, " is not supported"));
  } else {
    fail(cat("global '", module, ".", name,
             "' is not allowed: a state dict holds only dicts, tensors (torch._utils."
             "_rebuild_tensor_v2) and torch.*Storage types, and nothing is ever executed"));
  }
  push_new(std::move(v));
}

// Little-endian two's complement of 1..8 bytes (BININT*, LONG1).
void Unpickler::push_int_bytes(const uint8_t* p, size_t n) {
  if (n > 8) fail("integer wider than 64 bits");
  uint64_t u = 0;
  for (size_t k = n; k-- > 0;) u = (u << 8) | p[k];
  if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
  push_int(static_cast<int64_t>(u));
}

void Unpickler::memo_put(uint64_t index) {
  memo_[index] = top();
}

void Unpickler::memo_get(uint64_t index) {
  auto it = memo_.find(index);
  if (it == memo_.end()) fail(cat("memo entry ", index, " was never stored"));
  stack_.push_back(it->second);
}

std::vector<int64_t> Unpickler::int_tuple(uint32_t v, const char* what) const {
  if (at(v).kind != Kind::kTuple) fail(cat(what, " is not a tuple"));
  if (at(v).items.size() > kTorchMaxDims) {
    fail(cat(what, " has ", at(v).items.size(), " dimensions (at most ", kTorchMaxDims, ")"));
  }
  std::vector<int64_t> out;
  for (uint32_t item : at(v).items) out.push_back(as_int(item, what));
  return out;
}

// ("storage", torch.<Type>Storage, key, location, numel) -> a storage, checked against its entry.
void Unpickler::persistent_load() {
  const Value& pid = at(pop());
  if (pid.kind != Kind::kTuple || pid.items.size() != 5 || at(pid.items[0]).kind != Kind::kString ||
      at(pid.items[0]).s != "storage") {
    fail("persistent id is not a ('storage', type, key, location, numel) tuple");
  }
  const Value& type = at(pid.items[1]);
  if (type.kind != Kind::kGlobal || type.i != static_cast<int64_t>(Callable::kStorageType)) {
    fail("persistent id names no torch.*Storage type");
  }
  if (at(pid.items[2]).kind != Kind::kString || at(pid.items[3]).kind != Kind::kString) {
    fail("persistent id key and location must be strings");
  }
  const std::string key = at(pid.items[2]).s;
  const int64_t numel = as_int(pid.items[4], "storage element count");
  const StorageType& st = kStorageTypes[type.j];
  auto [it, inserted] = storage_by_key_.emplace(key, storages_.size());
  if (inserted) {
    const ZipEntry* entry = find_storage_(key);
    if (entry == nullptr) fail(cat("storage '", key, "' has no data/", key, " entry in the zip"));
    if (numel < 0 || static_cast<uint64_t>(numel) > entry->size / st.element_size ||
        static_cast<uint64_t>(numel) * st.element_size != entry->size) {
      fail(cat("storage '", key, "' holds ", entry->size, " bytes, but the pickle says ", numel,
               " elements of torch.", st.name));
    }
    storages_.push_back({key, static_cast<size_t>(type.j), numel, entry});
  } else if (storages_[it->second].type != static_cast<size_t>(type.j) ||
             storages_[it->second].numel != numel) {
    fail(cat("storage '", key, "' is referenced with two different types or sizes"));
  }
  Value v;
  v.kind = Kind::kStorage;
  v.i = static_cast<int64_t>(it->second);
  push_new(std::move(v));
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
// [, metadata]): only contiguous row-major views inside the storage.
uint32_t Unpickler::rebuild_tensor(const Value& args) {
  if (args.items.size() != 6 && args.items.size() != 7) {
    fail(cat("_rebuild_tensor_v2 takes 6 or 7 arguments, got ", args.items.size()));
  }
  const Value& storage = at(args.items[0]);
  if (storage.kind != Kind::kStorage) fail("_rebuild_tensor_v2: first argument is not a storage");
  PickledTensor t;
  t.storage = static_cast<size_t>(storage.i);
  t.offset = as_int(args.items[1], "storage offset");
  t.shape = int_tuple(args.items[2], "tensor size");
  std::vector<int64_t> stride = int_tuple(args.items[3], "tensor stride");
  if (stride.size() != t.shape.size()) fail("tensor size and stride differ in length");
  if (at(args.items[4]).kind != Kind::kBool) fail("requires_grad is not a bool");
  const Value& hooks = at(args.items[5]);
  if (hooks.kind != Kind::kDict || !hooks.items.empty()) fail("tensor has backward hooks");
  if (args.items.size() == 7) {
    const Value& meta = at(args.items[6]);
    if (meta.kind != Kind::kNone && !(meta.kind == Kind::kDict && meta.items.empty())) {
      fail("tensor has Python metadata (a tensor subclass?)");
    }
  }
  int64_t numel = 1;
  for (int64_t d : t.shape) {
    if (d < 0) fail("negative tensor size");
    if (d != 0 && numel > std::numeric_limits<int64_t>::max() / d) {
      fail("tensor element count overflows");
    }
    numel *= d;
  }
  // Row-major: each stride is the product of the sizes after it (size-1 dims may say anything,
  // and an empty tensor has no layout to check).
  int64_t expected_stride = 1;
  for (size_t d = t.shape.size(); d-- > 0 && numel != 0;) {
    if (t.shape[d] != 1 && stride[d] != expected_stride) {
      fail(
          "tensor is not contiguous (its strides are not row-major): save it after "
          ".contiguous()");
    }
    expected_stride *= t.shape[d];
  }
  const PickledStorage& s = storages_[t.storage];
  if (t.offset < 0 || t.offset > s.numel || numel > s.numel - t.offset) {
    fail(cat("tensor of ", numel, " elements at offset ", t.offset, " runs past its storage '",
             s.key, "' of ", s.numel, " elements"));
  }
  tensors_.push_back(std::move(t));
  Value v;
  v.kind = Kind::kTensor;
  v.i = static_cast<int64_t>(tensors_.size() - 1);
  const uint32_t index = push_new(std::move(v));
  stack_.pop_back();  // REDUCE pushes the result itself
  return index;
}

void Unpickler::reduce() {
  const uint32_t args_at = pop();
  const Value& fn = at(pop());
  const Value& args = at(args_at);
  if (fn.kind != Kind::kGlobal || args.kind != Kind::kTuple)
    fail("REDUCE needs a global and a tuple");
  switch (static_cast<Callable>(fn.i)) {
    case Callable::kOrderedDict: {
      if (!args.items.empty()) fail("OrderedDict(...) with arguments");
      Value d;
      d.kind = Kind::kDict;
      push_new(std::move(d));
      return;
    }
    case Callable::kRebuildTensorV2:
      stack_.push_back(rebuild_tensor(args));
      return;
    case Callable::kRebuildParameter:  // (data, requires_grad, backward_hooks): the data
      if (args.items.size() != 3 || at(args.items[0]).kind != Kind::kTensor) {
        fail("_rebuild_parameter takes (tensor, requires_grad, backward_hooks)");
      }
      stack_.push_back(args.items[0]);
      return;
    case Callable::kStorageType:
      break;
  }
  fail("a storage type cannot be called");
}

uint32_t Unpickler::run() {
  while (!stopped_) step(*take(1));
  if (stack_.size() != 1 || !marks_.empty()) fail("STOP with a stack that does not hold one value");
  return stack_.back();
}

void Unpickler::step(uint8_t op) {
  Value v;
  switch (op) {
    case 0x80:  // PROTO
      if (*take(1) > 5) fail("pickle protocol above 5");
      return;
    case 0x95:  // FRAME: a length hint only
      take(8);
      return;
    case '.':
      stopped_ = true;
      return;
    case '(':
      marks_.push_back(stack_.size());
      return;
    case 'N':
      push_new(Value{});
      return;
    case 0x88:
    case 0x89:  // NEWTRUE, NEWFALSE
      v.kind = Kind::kBool;
      v.i = op == 0x88;
      push_new(std::move(v));
      return;
    case 'K':  // BININT1: unsigned
      push_int(static_cast<int64_t>(*take(1)));
      return;
    case 'M':  // BININT2: unsigned
      push_int(static_cast<int64_t>(read_le(take(2), 2)));
      return;
    case 'J':  // BININT: signed
      push_int_bytes(take(4), 4);
      return;
    case 0x8a: {  // LONG1
      size_t n = *take(1);
      push_int_bytes(take(n), n);
      return;
    }
    case 'G': {  // BINFLOAT: big-endian double
      const uint8_t* p = take(8);
      uint64_t bits = 0;
      for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
      v.kind = Kind::kFloat;
      std::memcpy(&v.f, &bits, 8);
      push_new(std::move(v));
      return;
    }
    case 'X':
    case 0x8c: {  // BINUNICODE, SHORT_BINUNICODE
      const uint64_t n = op == 'X' ? read_le(take(4), 4) : *take(1);
      v.kind = Kind::kString;
      v.s.assign(reinterpret_cast<const char*>(take(n)), n);
      push_new(std::move(v));
      return;
    }
    case 'c': {  // GLOBAL "module\nname\n"
      std::string module = read_line();
      push_global(module, read_line());
      return;
    }
    case 0x93: {  // STACK_GLOBAL
      const Value& name = at(pop());
      const Value& module = at(pop());
      if (name.kind != Kind::kString || module.kind != Kind::kString)
        fail("STACK_GLOBAL needs strings");
      push_global(module.s, name.s);
      return;
    }
    case 'q':
      memo_put(*take(1));
      return;
    case 'r':
      memo_put(read_le(take(4), 4));
      return;
    case 0x94:  // MEMOIZE
      memo_put(memo_.size());
      return;
    case 'h':
      memo_get(*take(1));
      return;
    case 'j':
      memo_get(read_le(take(4), 4));
      return;
    case 'Q':
      persistent_load();
      return;
    case 'R':
      reduce();
      return;
    default:
      step_container(op);
  }
}

// Tuples, lists and dicts: building them and filling them.
void Unpickler::step_container(uint8_t op) {
  Value v;
  switch (op) {
    case ')':
      v.kind = Kind::kTuple;
      push_new(std::move(v));
      return;
    case 't':
      v.kind = Kind::kTuple;
      v.items = pop_to_mark();
      push_new(std::move(v));
      return;
    case 0x85:
    case 0x86:
    case 0x87: {  // TUPLE1..3
      v.kind = Kind::kTuple;
      v.items.resize(op - 0x84);
      for (size_t k = v.items.size(); k-- > 0;) v.items[k] = pop();
      push_new(std::move(v));
      return;
    }
    case ']':
      v.kind = Kind::kList;
      push_new(std::move(v));
      return;
    case 'l':
      v.kind = Kind::kList;
      v.items = pop_to_mark();
      push_new(std::move(v));
      return;
    case '}':
      v.kind = Kind::kDict;
      push_new(std::move(v));
      return;
    case 'd': {
      v.kind = Kind::kDict;
      v.items = pop_to_mark();
      if (v.items.size() % 2 != 0) fail("DICT with an odd number of items");
      push_new(std::move(v));
      return;
    }
    case 'a': {  // APPEND
      uint32_t item = pop();
      mutable_container(top(), Kind::kList, "APPEND").items.push_back(item);
      return;
    }
    case 'e': {  // APPENDS
      std::vector<uint32_t> items = pop_to_mark();
      Value& list = mutable_container(top(), Kind::kList, "APPENDS");
      list.items.insert(list.items.end(), items.begin(), items.end());
      return;
    }
    case 's': {  // SETITEM
      uint32_t value = pop(), key = pop();
      Value& dict = mutable_container(top(), Kind::kDict, "SETITEM");
      dict.items.push_back(key);
      dict.items.push_back(value);
      return;
    }
    case 'u': {  // SETITEMS
      std::vector<uint32_t> items = pop_to_mark();
      if (items.size() % 2 != 0) fail("SETITEMS with an odd number of items");
      Value& dict = mutable_container(top(), Kind::kDict, "SETITEMS");
      dict.items.insert(dict.items.end(), items.begin(), items.end());
      return;
    }
    case 'b': {  // BUILD: only an OrderedDict's attributes (state_dict()._metadata), skipped
      uint32_t state = pop();
      if (at(top()).kind != Kind::kDict ||
          (at(state).kind != Kind::kDict && at(state).kind != Kind::kNone)) {
        fail("BUILD on something other than an OrderedDict's attributes");
      }
      return;
    }
    default:
      fail(cat("pickle opcode 0x", std::hex, static_cast<int>(op), std::dec,
               " is not part of a torch.save state dict"));
  }
}

}  // namespace

int64_t TorchTensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void TorchCheckpointFile::parse_all() {
  // The pre-1.6 format is a bare pickle stream (protocol 2: 0x80 0x02) followed by raw storages.
  if (size_ >= 2 && data_[0] == 0x80) {
    throw Error(cat(name_,
                    ": this is PyTorch's legacy (pre-1.6, non-zip) checkpoint format, "
                    "which is not supported: load it with torch and save it again with "
                    "torch.save (or as safetensors)"));
  }
  if (size_ < 4 || read_le(data_, 4) != kLocalHeaderSig) {
    throw Error(cat(name_, ": not a torch.save zip checkpoint (no zip signature)"));
  }
  std::vector<ZipEntry> entries = ZipReader(data_, size_, name_).read_entries();
  std::unordered_map<std::string, size_t> by_name;
  const ZipEntry* pickle = nullptr;
  std::string prefix;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!by_name.emplace(entries[i].name, i).second) {
      throw Error(cat(name_, ": zip entry '", entries[i].name, "' appears twice"));
    }
    const std::string& n = entries[i].name;
    const size_t slash = n.find('/');
    if (slash != std::string::npos && slash > 0 && n.substr(slash) == "/data.pkl") {
      if (pickle != nullptr) throw Error(cat(name_, ": more than one data.pkl in the zip"));
      pickle = &entries[i];
      prefix = n.substr(0, slash + 1);
    }
  }
  if (pickle == nullptr)
    throw Error(cat(name_, ": no <archive>/data.pkl: not a torch.save checkpoint"));
  if (auto it = by_name.find(prefix + "byteorder"); it != by_name.end()) {
    const ZipEntry& e = entries[it->second];
    std::string_view order(reinterpret_cast<const char*>(data_ + e.data_offset), e.size);
    if (order != "little") {
      throw Error(cat(name_, ": byte order '", order.substr(0, 16),
                      "' (only little-endian checkpoints are supported)"));
    }
  }
  if (pickle->size > kTorchMaxPickleBytes) {
    throw Error(cat(name_, ": data.pkl of ", pickle->size, " bytes exceeds the limit of ",
                    kTorchMaxPickleBytes));
  }
  Unpickler unpickler(data_ + pickle->data_offset, pickle->size, name_,
                      [&](const std::string& key) -> const ZipEntry* {
                        auto it = by_name.find(prefix + "data/" + key);
                        return it == by_name.end() ? nullptr : &entries[it->second];
                      });
  const Value& top = unpickler.at(unpickler.run());
  if (top.kind != Kind::kDict) {
    throw Error(cat(name_, ": data.pkl does not hold a dict of tensors (a state dict)"));
  }
  for (size_t k = 0; k + 1 < top.items.size(); k += 2) {
    const Value& key = unpickler.at(top.items[k]);
    const Value& value = unpickler.at(top.items[k + 1]);
    if (key.kind != Kind::kString) throw Error(cat(name_, ": state dict key is not a string"));
    if (value.kind != Kind::kTensor) {
      throw Error(cat(name_, ": state dict entry '", key.s,
                      "' is not a tensor (a training checkpoint rather than a state dict?)"));
    }
    const PickledTensor& t = unpickler.tensors()[static_cast<size_t>(value.i)];
    const PickledStorage& s = unpickler.storages()[t.storage];
    const StorageType& st = kStorageTypes[s.type];
    TorchTensorInfo info;
    info.name = key.s;
    info.dtype = st.dtype;
    info.storage_type = std::string(st.name);
    info.storage_key = s.key;
    info.shape = t.shape;
    info.storage_offset = t.offset;
    info.file_offset = s.entry->data_offset + static_cast<uint64_t>(t.offset) * st.element_size;
    info.num_bytes = static_cast<uint64_t>(info.num_elements()) * st.element_size;
    // A key set twice keeps its last value, as a Python dict would.
    auto [it, inserted] = tensor_index_.emplace(info.name, tensors_.size());
    if (inserted) {
      tensors_.push_back(std::move(info));
    } else {
      tensors_[it->second] = std::move(info);
    }
  }
}

TorchWeightSource::TorchWeightSource(std::shared_ptr<const TorchCheckpoint> checkpoint,
                                     HfWeightNameMap name_map)
    : checkpoint_(std::move(checkpoint)), name_map_(std::move(name_map)) {}

std::string TorchWeightSource::path() const {
  return checkpoint_->path();
}

std::optional<Tensor> TorchWeightSource::find(const std::string& name) const {
  std::optional<std::string> hf_name = name_map_(name);
  if (!hf_name) return std::nullopt;
  auto [info, file] = checkpoint_->find(*hf_name);
  if (info == nullptr) return std::nullopt;
  if (!info->dtype) {
    throw Error(cat(file->path(), ": tensor '", info->name, "' is stored as torch.",
                    info->storage_type,
                    "; only FloatStorage, HalfStorage and BFloat16Storage "
                    "weights can be loaded"));
  }
  const uint8_t* data = file->tensor_data(*info);
  const auto elem_size = static_cast<uintptr_t>(traits(*info->dtype).type_size);
  if (reinterpret_cast<uintptr_t>(data) % elem_size == 0) {
    return Tensor::view(static_cast<const void*>(data), *info->dtype, info->shape);
  }
  // Kernels read whole elements: a misaligned tensor (torch.save aligns to 64, so rare) is copied.
  Tensor copy = Tensor::empty(*info->dtype, info->shape);
  std::memcpy(copy.data(), data, info->num_bytes);
  return copy;
}

std::string TorchWeightSource::display_name(const std::string& name) const {
  std::optional<std::string> hf_name = name_map_(name);
  return hf_name ? cat("'", *hf_name, "' (", name, ")")
                 : cat("'", name, "' (no Hugging Face name)");
}

}  // namespace cvllm
