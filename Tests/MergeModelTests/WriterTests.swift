import Foundation
import Testing
import _TestSupport

@testable import MergeModel

/// Random tensors of every storable dtype, with their exact stored bytes.
func randomTensors(count: Int, seed: UInt64) -> [(TensorSpec, [UInt8])] {
  var rng = SplitMix64(state: seed)
  let dtypes: [DType] = [.bfloat16, .float32, .float16, .float64]
  return (0..<count).map { i in
    let dtype = dtypes[i % dtypes.count]
    let shape =
      i % 5 == 0 ? [Int(rng.next() % 7) + 1] : [Int(rng.next() % 9) + 1, Int(rng.next() % 13) + 1]
    let spec = TensorSpec(name: "model.layers.\(i / 4).t\(i).weight", dtype: dtype, shape: shape)
    let bytes = (0..<spec.byteCount).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    return (spec, bytes)
  }
}

func writeModel(_ tensors: [(TensorSpec, [UInt8])], to destination: String, shardSize: Int) throws {
  let folder = try OutputFolder(destination: destination)
  let layout = ShardLayout(tensors: tensors.map(\.0), shardSize: shardSize)
  let writer = try SafetensorsWriter(folder: folder, layout: layout)
  // Write each tensor in two pieces, second half first, as workers would.
  for (spec, bytes) in tensors.reversed() {
    let half = bytes.count / 2
    try bytes.withUnsafeBytes { raw in
      try writer.write(
        tensor: spec.name, byteOffset: half, bytes: UnsafeRawBufferPointer(rebasing: raw[half...]))
      try writer.write(
        tensor: spec.name, byteOffset: 0, bytes: UnsafeRawBufferPointer(rebasing: raw[..<half]))
    }
  }
  try writer.finish()
  try folder.write("config.json", bytes: Array("{\"num_hidden_layers\": 3}".utf8))
  try folder.commit()
}

@Suite struct WriterTests {
  @Test("files the writer produces read back bit-exactly, in one shard or many")
  func roundTrip() throws {
    let dir = TemporaryDirectory()
    let tensors = randomTensors(count: 23, seed: 3)
    for (name, shardSize) in [("one", 0), ("many", 300)] {
      let destination = dir.path + "/" + name
      try writeModel(tensors, to: destination, shardSize: shardSize)
      let folder = try ModelFolder(path: destination)
      if shardSize == 0 {
        #expect(folder.weightFiles == ["model.safetensors"])
      } else {
        #expect(folder.weightFiles.count > 3)
        #expect(
          folder.weightFiles.first
            == "model-00001-of-\(String(format: "%05d", folder.weightFiles.count)).safetensors")
      }
      let weights = try folder.openWeights()
      #expect(weights.tensors.count == tensors.count)
      for (spec, bytes) in tensors {
        let view = try weights.tensor(spec.name)
        #expect(view.info.dtype == spec.dtype)
        #expect(view.info.shape == spec.shape)
        #expect(Array(view.bytes) == bytes, "\(spec.name)")
        // Every tensor is aligned for its dtype.
        #expect(Int(bitPattern: view.bytes.baseAddress) % spec.dtype.byteSize == 0)
      }
    }
  }

  @Test("a write that crosses a chunk's end starts the writeback of the chunk before it")
  func writebackBehind() {
    let c = 1 << 20
    // Within a chunk, or crossing only the first boundary: nothing yet.
    #expect(SafetensorsWriter.writeback(after: 10..<c - 1, chunk: c) == nil)
    #expect(SafetensorsWriter.writeback(after: c - 5..<c + 5, chunk: c) == nil)
    // Crossing the second boundary: the first chunk, whose blocks are all written by then.
    #expect(SafetensorsWriter.writeback(after: 2 * c - 5..<2 * c + 5, chunk: c) == 0..<c)
    // Ending exactly on a boundary counts as crossing it.
    #expect(SafetensorsWriter.writeback(after: 3 * c - 8..<3 * c, chunk: c) == c..<2 * c)
    // A write that starts on a boundary crossed nothing new.
    #expect(SafetensorsWriter.writeback(after: 3 * c..<3 * c + 7, chunk: c) == nil)
    // A write longer than a chunk: the chunk before the last one it ends in.
    #expect(SafetensorsWriter.writeback(after: 1..<5 * c + 1, chunk: c) == 3 * c..<4 * c)
  }

  @Test("decoding converts every float dtype to f32")
  func decode() throws {
    let dir = TemporaryDirectory()
    let values: [Float] = [1.5, -2.25, 0, 65504, 1e-3]
    var tensors: [(TensorSpec, [UInt8])] = []
    let bf: [UInt16] = values.map(FloatConversion.bfloat16(from:))
    let f16: [UInt16] = values.map(FloatConversion.float16(from:))
    tensors.append(
      (TensorSpec(name: "bf", dtype: .bfloat16, shape: [5]), bf.withUnsafeBytes { Array($0) }))
    tensors.append(
      (TensorSpec(name: "h", dtype: .float16, shape: [5]), f16.withUnsafeBytes { Array($0) }))
    tensors.append(
      (TensorSpec(name: "f", dtype: .float32, shape: [5]), values.withUnsafeBytes { Array($0) }))
    let doubles = values.map(Double.init)
    tensors.append(
      (TensorSpec(name: "d", dtype: .float64, shape: [5]), doubles.withUnsafeBytes { Array($0) }))
    try writeModel(tensors, to: dir.path + "/m", shardSize: 0)
    let weights = try ModelFolder(path: dir.path + "/m").openWeights()
    #expect(try weights.tensor("f").floats() == values)
    #expect(try weights.tensor("d").floats() == values)
    #expect(
      try weights.tensor("bf").floats()
        == values.map { FloatConversion.float(fromBFloat16: FloatConversion.bfloat16(from: $0)) })
    #expect(
      try weights.tensor("h").floats()
        == values.map { FloatConversion.float(fromFloat16: FloatConversion.float16(from: $0)) })
  }

  @Test(
    "Python's safetensors reads the writer's files bit-exactly",
    .requiresPython("safetensors", "numpy"))
  func pythonRoundTrip() throws {
    let env = "/usr/bin/env"
    let dir = TemporaryDirectory()
    let tensors = randomTensors(count: 9, seed: 5).filter { $0.0.dtype != .bfloat16 }
    try writeModel(tensors, to: dir.path + "/m", shardSize: 0)
    let script = """
      import sys, hashlib
      from safetensors.numpy import load_file
      d = load_file(sys.argv[1])
      for k in sorted(d): print(k, d[k].dtype, list(d[k].shape), hashlib.sha256(d[k].tobytes()).hexdigest())
      """
    let result = try runProcess(
      env, Python.command + ["-c", script, dir.path + "/m/model.safetensors"])
    #expect(result.status == 0, "\(result.stderr)")
    let names: [DType: String] = [.float32: "float32", .float16: "float16", .float64: "float64"]
    var expected: [String] = []
    for (spec, bytes) in tensors.sorted(by: { $0.0.name < $1.0.name }) {
      expected.append("\(spec.name) \(names[spec.dtype] ?? "") \(spec.shape) \(sha256Hex(bytes))")
    }
    #expect(result.stdout == expected.joined(separator: "\n") + "\n")
  }

  @Test("an output folder appears only on commit, and replaces a previous output only if asked")
  func atomicFolder() throws {
    let dir = TemporaryDirectory()
    let destination = dir.path + "/out"
    dir.write("out/mergekit_config.yml", "old")
    #expect(throws: ModelError.self) { try OutputFolder(destination: destination) }
    do {
      let folder = try OutputFolder(destination: destination, existing: .replaceMergeOutput)
      try folder.write("new.txt", bytes: Array("new".utf8))
      #expect(FileManager.default.fileExists(atPath: destination + "/mergekit_config.yml"))
      folder.discard()
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
    #expect(FileManager.default.fileExists(atPath: destination + "/mergekit_config.yml"))
    let folder = try OutputFolder(destination: destination, existing: .replaceMergeOutput)
    try folder.write("new.txt", bytes: Array("new".utf8))
    try folder.commit()
    #expect(try FileManager.default.contentsOfDirectory(atPath: destination) == ["new.txt"])
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
    // A folder that is not a merge output is never replaced, even when asked.
    dir.write("mine/notes.txt", "keep")
    #expect(throws: ModelError.self) {
      try OutputFolder(destination: dir.path + "/mine", existing: .replaceMergeOutput)
    }
  }

  @Test("a folder's names, all or those with a prefix, sorted")
  func folderNames() throws {
    let dir = TemporaryDirectory()
    for name in ["b", ".out.partial-9-1", "a", ".c", ".out.lock"] { dir.write(name, "x") }
    #expect(
      try FileSystem.contents(of: dir.path) == [".c", ".out.lock", ".out.partial-9-1", "a", "b"])
    #expect(
      try FileSystem.contents(of: dir.path, startingWith: ".out.")
        == [".out.lock", ".out.partial-9-1"])
    #expect(try FileSystem.contents(of: dir.path, startingWith: "z").isEmpty)
  }

  @Test("a folder abandoned without commit is removed, and a dead process's leftovers too")
  func leftovers() throws {
    let dir = TemporaryDirectory()
    do {
      let folder = try OutputFolder(destination: dir.path + "/out")
      try folder.write("x", bytes: [1])
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    // A leftover of a process that no longer exists (pid 2^22 + 1 is above Linux's pid_max).
    dir.write(".out.partial-4194305-1/model.safetensors", "x")
    let folder = try OutputFolder(destination: dir.path + "/out")
    let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    #expect(names == [".out.lock", (folder.temporaryPath as NSString).lastPathComponent])
  }

  @Test("sharded indexes that name missing shards or are not weight maps are rejected")
  func badIndexes() throws {
    let dir = TemporaryDirectory()
    try writeModel(randomTensors(count: 8, seed: 9), to: dir.path + "/m", shardSize: 200)
    let indexPath = dir.path + "/m/model.safetensors.index.json"
    let original = try String(contentsOfFile: indexPath, encoding: .utf8)
    try original.replacingOccurrences(of: "model-00002-of", with: "model-00009-of")
      .write(toFile: indexPath, atomically: true, encoding: .utf8)
    #expect(
      throws: ModelError.badIndex(
        path: indexPath,
        reason: "it names shard 'model-00009-of-00004.safetensors', which is not in the folder")
    ) {
      _ = try ModelFolder(path: dir.path + "/m")
    }
    try "{\"metadata\": {}}".write(toFile: indexPath, atomically: true, encoding: .utf8)
    #expect(
      throws: ModelError.badIndex(
        path: indexPath, reason: "it has no 'weight_map' object: this is not a weight index")
    ) {
      _ = try ModelFolder(path: dir.path + "/m")
    }
    try "[1, 2]".write(toFile: indexPath, atomically: true, encoding: .utf8)
    #expect(throws: ModelError.badIndex(path: indexPath, reason: "not a JSON object")) {
      _ = try ModelFolder(path: dir.path + "/m")
    }
  }
}

/// SHA-256 of `bytes`, hex (a small implementation for tests; no dependency).
func sha256Hex(_ bytes: [UInt8]) -> String {
  var h: [UInt32] = [
    0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab,
    0x5be0_cd19,
  ]
  let k: [UInt32] = [
    0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4,
    0xab1c_5ed5,
    0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7,
    0xc19b_f174,
    0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc,
    0x76f9_88da,
    0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351,
    0x1429_2967,
    0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e,
    0x9272_2c85,
    0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585,
    0x106a_a070,
    0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f,
    0x682e_6ff3,
    0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7,
    0xc671_78f2,
  ]
  var message = bytes
  let bitLength = UInt64(bytes.count) * 8
  message.append(0x80)
  while message.count % 64 != 56 { message.append(0) }
  for i in (0..<8).reversed() {
    message.append(UInt8(truncatingIfNeeded: bitLength >> (8 * UInt64(i))))
  }
  func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
  for chunk in stride(from: 0, to: message.count, by: 64) {
    var w = [UInt32](repeating: 0, count: 64)
    for i in 0..<16 {
      w[i] = (0..<4).reduce(0) { $0 << 8 | UInt32(message[chunk + 4 * i + $1]) }
    }
    for i in 16..<64 {
      let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
      let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
      w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
    }
    var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
    for i in 0..<64 {
      let t1 =
        hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
      let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
      (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
    }
    h = [h[0] &+ a, h[1] &+ b, h[2] &+ c, h[3] &+ d, h[4] &+ e, h[5] &+ f, h[6] &+ g, h[7] &+ hh]
  }
  return h.map { String(format: "%08x", $0) }.joined()
}
