import Foundation
import MergeModel
import Testing
import _TestSupport

@testable import MergeCLI

@Suite struct InspectTests {
  @Test("inspect --json lists the tiny Llama's 39 BF16 tensors and 312,896 parameters")
  func tinyLlamaJSON() throws {
    let result = merge("inspect", Repository.tinyLlama + "/base", "--json")
    #expect(result.status == 0)
    let json = try JSONValue.parse(result.out)
    let tensors = try #require(json["tensors"]?.arrayValue)
    #expect(tensors.count == 39)
    #expect(tensors.allSatisfy { $0["dtype"]?.stringValue == "BF16" })
    #expect(tensors.first?["name"]?.stringValue == "lm_head.weight")
    #expect(tensors.first?["shape"]?.arrayValue?.compactMap(\.intValue) == [1024, 64])
    #expect(json["parameters"]?.intValue == 312_896)
    #expect(json["bytes"]?.intValue == 625_792)
    #expect(json["layers"]?.intValue == 4)
    #expect(json["metadata"]?["format"]?.stringValue == "pt")
    #expect(json.objectValue?.map(\.0) == ["tensors", "parameters", "bytes", "layers", "metadata"])
  }

  @Test("a tensor named for layer 2^63 − 1 is listed; the layer count does not overflow")
  func hugeLayerIndex() throws {
    let directory = TemporaryDirectory()
    let path = writeModelFolder(
      directory, "m", config: "{}",
      tensors: [
        ("model.layers.0.mlp.weight", [2, 2]), ("model.layers.9223372036854775807.mlp.weight", [2]),
      ])
    let result = merge("inspect", path, "--json")
    #expect(result.status == 0, "\(result.err)")
    let json = try JSONValue.parse(result.out)
    #expect(json["tensors"]?.arrayValue?.count == 2)
    #expect(json["layers"]?.intValue == 1)
  }

  @Test("inspect prints a line per tensor and the totals")
  func text() {
    let result = merge("inspect", Repository.tinyLlama + "/ft0/model.safetensors")
    #expect(result.status == 0)
    let lines = result.out.split(separator: "\n")
    #expect(lines.count == 40)
    #expect(lines.last == "39 tensors, 312,896 parameters, 625,792 bytes, 4 layers")
    #expect(lines.contains("model.norm.weight                               BF16    [64]"))
  }

  @Test(
    "every malformed file is exit 1 with a message naming the file",
    arguments: MalformedSafetensors.cases)
  func malformed(_ c: MalformedSafetensors.Case) {
    let dir = TemporaryDirectory()
    let path = dir.write("bad.safetensors", bytes: c.bytes)
    let result = merge("inspect", path)
    #expect(result.status == 1)
    #expect(result.out == "")
    #expect(result.err == "error: \(path): \(c.message)\n")
  }

  @Test("a sharded folder is read through its index; a bad index is exit 1 naming it")
  func shardedFolders() throws {
    let dir = TemporaryDirectory()
    let specs = (0..<6).map {
      TensorSpec(name: "model.layers.\($0).w", dtype: .float32, shape: [16])
    }
    let folder = try OutputFolder(destination: dir.path + "/m")
    let layout = ShardLayout(tensors: specs, shardSize: 130)
    let writer = try SafetensorsWriter(folder: folder, layout: layout)
    try writer.finish()
    try folder.commit()
    let ok = merge("inspect", dir.path + "/m")
    #expect(ok.status == 0)
    #expect(ok.out.hasSuffix("6 tensors, 96 parameters, 384 bytes, 6 layers\n"))
    let index = dir.path + "/m/model.safetensors.index.json"
    try FileManager.default.removeItem(atPath: dir.path + "/m/model-00002-of-00003.safetensors")
    let missing = merge("inspect", dir.path + "/m")
    #expect(missing.status == 1)
    #expect(
      missing.err
        == "error: \(index): it names shard 'model-00002-of-00003.safetensors', which is not in the folder\n"
    )
    try "{\"weights\": {}}".write(toFile: index, atomically: true, encoding: .utf8)
    let notMap = merge("inspect", dir.path + "/m")
    #expect(notMap.status == 1)
    #expect(
      notMap.err == "error: \(index): it has no 'weight_map' object: this is not a weight index\n")
  }

  @Test("a path that does not exist is exit 1")
  func missingPath() {
    let result = merge("inspect", "/nonexistent/model")
    #expect(result.status == 1)
    #expect(result.err == "error: '/nonexistent/model' does not exist\n")
  }
}
