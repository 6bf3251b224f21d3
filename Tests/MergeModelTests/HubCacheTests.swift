import MergeModel
import Testing
import _TestSupport

@Suite struct HubCacheTests {
  @Test("repository ids are what huggingface_hub accepts")
  func repositoryIDs() {
    for valid in ["gpt2", "org/name", "Org-1/name_2.v3", "a/b"] {
      #expect(HubRepositoryID(valid)?.value == valid, "\(valid)")
    }
    for invalid in [
      "", "a/b/c", "/abs", "org/", "/name", "org--x/name", "org/na..me", ".org/name", "org/name-",
      "org/na me", "org/nàme", String(repeating: "a", count: 97),
    ] {
      #expect(HubRepositoryID(invalid) == nil, "\(invalid)")
    }
    #expect(HubRepositoryID("org/name")?.cacheFolderName == "models--org--name")
  }

  @Test("a revision is a branch or tag in refs/, or a commit id naming its snapshot")
  func revisions() throws {
    let cache = HubCache(path: Repository.parity + "/hf-cache/hub")
    let repository = try #require(HubRepositoryID("tiny-org/llama-ft0"))
    let commit = "17066320ab39747c9536a8c574912cc6b7f4ddd3"
    let snapshot = cache.path + "/models--tiny-org--llama-ft0/snapshots/" + commit
    #expect(cache.snapshot(of: repository, revision: nil) == .success(snapshot))
    #expect(cache.snapshot(of: repository, revision: "main") == .success(snapshot))
    #expect(cache.snapshot(of: repository, revision: commit) == .success(snapshot))
    let folder = cache.path + "/models--tiny-org--llama-ft0"
    #expect(
      cache.snapshot(of: repository, revision: "v2")
        == .failure(.revision("v2", known: ["main", "17066320ab39"], folder: folder)))
    #expect(
      cache.snapshot(of: repository, revision: "../../llama-base/refs/main")
        == .failure(.revision("../../llama-base/refs/main", known: [], folder: folder)))
    let missing = try #require(HubRepositoryID("tiny-org/none"))
    #expect(
      cache.snapshot(of: missing, revision: nil)
        == .failure(.repository(folder: cache.path + "/models--tiny-org--none")))
  }

  @Test("a snapshot file holding its link's target as text is read as the blob it names")
  func textLinks() throws {
    let snapshot =
      Repository.parity
      + "/hf-cache/hub/models--tiny-org--llama-base/snapshots/35fa3b9573e155e6739e05ca8dd950502d18342d"
    let header = try SafetensorsHeader(path: snapshot + "/model.safetensors")
    #expect(header.tensors.count == 39)
    let config = try FileSystem.read(snapshot + "/config.json")
    #expect(config.count == 718)
    #expect(FileSystem.status(of: snapshot + "/model.safetensors")?.st_size == 629_840)
    // Outside a snapshot, or naming no blob, such text is an ordinary file.
    let dir = TemporaryDirectory()
    let plain = dir.write(
      "snapshots/x/config.json", "../../blobs/" + String(repeating: "a", count: 40))
    #expect(try FileSystem.read(plain).count == 52)
    // A blob that is itself written as a link is not followed further: crafted links lead one
    // step into `blobs/`, never round a cycle.
    let id = String(repeating: "b", count: 40)
    let link = dir.write("w/hub/snapshots/x/config.json", "../../blobs/" + id)
    _ = dir.write("w/hub/blobs/" + id, "../../blobs/" + id)
    _ = dir.write("w/blobs/" + id, "the second hop")
    #expect(try FileSystem.read(link) == Array(("../../blobs/" + id).utf8))
  }
}
