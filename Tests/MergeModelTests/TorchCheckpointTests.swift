import Foundation
import MergeModel
import Testing
import _TestSupport

/// `pytorch_model.bin` read by the restricted pickle reader (Tests/Parity/bin-models, written by
/// torch.save through Scripts/make-bin-fixtures.py).
@Suite struct TorchCheckpointTests {
  static let models = Repository.parity + "/bin-models"

  /// Each tensor's name, dtype, shape and bytes.
  static func contents(_ weights: ModelWeights) throws -> [String: (DType, [Int], [UInt8])] {
    var out: [String: (DType, [Int], [UInt8])] = [:]
    for t in weights.tensors {
      let view = try weights.tensor(t.name)
      out[t.name] = (t.dtype, t.shape, Array(view.bytes))
    }
    return out
  }

  @Test(
    "a torch.save checkpoint, whole or sharded with its index, holds the safetensors twin's tensors byte for byte",
    arguments: [("base", "base"), ("ft0-sharded", "ft0")])
  func twins(_ pair: (String, String)) throws {
    let folder = try ModelFolder(path: Self.models + "/" + pair.0)
    let bin = try Self.contents(try folder.openWeights())
    let safetensors = try Self.contents(
      try ModelFolder(path: Repository.tinyLlama + "/" + pair.1).openWeights())
    #expect(bin.count == 39)
    #expect(Set(bin.keys) == Set(safetensors.keys))
    for (name, (dtype, shape, bytes)) in safetensors {
      let other = try #require(bin[name])
      #expect(other.0 == dtype && other.1 == shape && other.2 == bytes, "\(name)")
    }
  }

  @Test(
    "a view sharing its storage with offset, a Parameter, and f16/bf16/i64 storages read as torch saved them"
  )
  func storages() throws {
    let corpus = Repository.root + "/Scripts/fuzz/corpus/checkpoint"
    let shared = try SafetensorsFile.open(corpus + "/shared-storage.bin")
    #expect(try shared.tensor("y").floats() == (0..<12).map(Float.init))
    #expect(try shared.tensor("x").floats() == (2..<8).map(Float.init))
    #expect(
      try SafetensorsFile.open(corpus + "/parameter.bin").tensor("p").floats() == [1, 1, 1, 1])
    let two = try SafetensorsFile.open(corpus + "/two-dtypes.bin")
    #expect(try two.tensor("w").info.dtype == .bfloat16)
    #expect(try two.tensor("w").floats() == [0, 0, 0, 0])
    #expect(try two.tensor("b").floats() == [1, 1, 1])
  }

  @Test("a pickle that would run os.system is refused, naming the call; nothing runs")
  func hostile() throws {
    let dir = TemporaryDirectory()
    let copy = dir.path + "/hostile"
    try FileManager.default.copyItem(atPath: Self.models + "/hostile", toPath: copy)
    #expect(throws: ModelError.self) { try ModelFolder(path: copy).openWeights() }
    do {
      _ = try ModelFolder(path: copy).openWeights()
    } catch {
      #expect(
        error.description
          == "\(copy)/pytorch_model.bin: its pickle calls posix.system; merge only rebuilds tensors and never runs code from a checkpoint"
      )
    }
    #expect(!FileManager.default.fileExists(atPath: copy + "/PWNED"))
    #expect(!FileManager.default.fileExists(atPath: "PWNED"))
  }

  /// A zip archive of `entries`, stored (as torch.save writes them) or deflate-marked.
  static func zip(_ entries: [(String, [UInt8])], method: UInt16 = 0) -> [UInt8] {
    func le(_ v: Int, _ width: Int) -> [UInt8] { (0..<width).map { UInt8((v >> (8 * $0)) & 0xFF) } }
    var out: [UInt8] = []
    var central: [UInt8] = []
    for (name, data) in entries {
      let offset = out.count
      let n = Array(name.utf8)
      let fields = le(20, 2) + le(0, 2) + le(Int(method), 2) + le(0, 4) + le(0, 4)
      out +=
        le(0x0403_4b50, 4) + fields + le(data.count, 4) + le(data.count, 4) + le(n.count, 2)
        + le(0, 2) + n + data
      central +=
        le(0x0201_4b50, 4) + le(20, 2) + fields + le(data.count, 4) + le(data.count, 4)
        + le(n.count, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(offset, 4) + n
    }
    let start = out.count
    out += central
    out +=
      le(0x0605_4b50, 4) + le(0, 4) + le(entries.count, 2) + le(entries.count, 2)
      + le(central.count, 4) + le(start, 4) + le(0, 2)
    return out
  }

  /// A pickle of `{"w": _rebuild_tensor_v2(storage '0' of FloatStorage, offset, shape, stride)}`.
  static func statePickle(
    shape: [Int], stride: [Int], offset: Int = 0,
    global: String = "torch._utils\n_rebuild_tensor_v2\n"
  ) -> [UInt8] {
    func tuple(_ xs: [Int]) -> [UInt8] { [0x28] + xs.flatMap { [0x4B, UInt8($0)] } + [0x74] }
    var p: [UInt8] = [0x80, 0x02, 0x7D, 0x28, 0x58] + [1, 0, 0, 0] + Array("w".utf8)
    p += [0x63] + Array(global.utf8)
    p += [0x28, 0x28, 0x58, 7, 0, 0, 0] + Array("storage".utf8)
    p += [0x63] + Array("torch\nFloatStorage\n".utf8)
    p += [0x58, 1, 0, 0, 0, 0x30, 0x58, 3, 0, 0, 0] + Array("cpu".utf8) + [0x4B, 6, 0x74, 0x51]
    p += [0x4B, UInt8(offset)] + tuple(shape) + tuple(stride) + [0x89, 0x4E, 0x74, 0x52]
    p += [0x75, 0x2E]
    return p
  }

  @Test("what a state dict does not hold is refused with the reason")
  func refusals() throws {
    let dir = TemporaryDirectory()
    let six = (0..<6).flatMap { withUnsafeBytes(of: Float($0).bitPattern.littleEndian, Array.init) }
    let cases: [(String, [UInt8], String)] = [
      (
        "ok",
        Self.zip([
          ("a/data.pkl", Self.statePickle(shape: [2, 3], stride: [3, 1])), ("a/data/0", six),
        ]),
        ""
      ),
      (
        "strided",
        Self.zip([
          ("a/data.pkl", Self.statePickle(shape: [2, 3], stride: [1, 2])), ("a/data/0", six),
        ]),
        "tensor 'w': it is not contiguous (strides [1, 2] for shape [2, 3]); save it with .contiguous()"
      ),
      (
        "past",
        Self.zip([
          ("a/data.pkl", Self.statePickle(shape: [2, 3], stride: [3, 1], offset: 1)),
          ("a/data/0", six),
        ]),
        "tensor 'w': it reaches past its storage"
      ),
      (
        "nostorage", Self.zip([("a/data.pkl", Self.statePickle(shape: [2, 3], stride: [3, 1]))]),
        "tensor 'w': its storage '0' is not in the archive"
      ),
      (
        "eval",
        Self.zip([
          (
            "a/data.pkl",
            Self.statePickle(shape: [2, 3], stride: [3, 1], global: "builtins\neval\n")
          ), ("a/data/0", six),
        ]),
        "its pickle calls builtins.eval; merge only rebuilds tensors and never runs code from a checkpoint"
      ),
      (
        "inst",
        Self.zip([
          ("a/data.pkl", [0x80, 0x02, 0x69] + Array("os\nsystem\n".utf8) + [0x2E]),
          ("a/data/0", six),
        ]),
        "its pickle uses opcode 0x69, which a state dict does not need"
      ),
      (
        "deflated",
        Self.zip([("a/data.pkl", Self.statePickle(shape: [2, 3], stride: [3, 1]))], method: 8),
        "'a/data.pkl' is compressed; torch.save stores entries uncompressed"
      ),
      ("notzip", Array("not a zip at all, just text".utf8), "no end-of-central-directory record"),
      (
        "deep",
        Self.zip([
          ("a/data.pkl", [0x80, 0x02, 0x4E] + [UInt8](repeating: 0x85, count: 200_000) + [0x2E])
        ]),
        "its pickle nests containers more than 32 deep"
      ),
    ]
    for (name, bytes, message) in cases {
      let path = dir.write(name + ".bin", bytes: bytes)
      if message.isEmpty {
        let file = try SafetensorsFile.open(path)
        #expect(try file.tensor("w").floats() == [0, 1, 2, 3, 4, 5])
        continue
      }
      do {
        _ = try SafetensorsFile.open(path)
        Issue.record("\(name) was accepted")
      } catch {
        #expect(error.description.contains(message), "\(name): \(error.description)")
      }
    }
  }
}
