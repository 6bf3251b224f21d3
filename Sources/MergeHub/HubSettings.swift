import MergeModel

/// Where the Hub is and who asks it, from the environment `huggingface_hub` reads.
public struct HubSettings: Sendable, Hashable {
  /// The Hub's address, without a trailing `/` (`$HF_ENDPOINT`, else `https://huggingface.co`).
  public var endpoint: String
  /// The access token (`$HF_TOKEN`, else the token file), if any.
  public var token: String?
  /// Whether the network is forbidden (`$HF_HUB_OFFLINE` is 1, ON, YES or TRUE).
  public var offline: Bool

  /// Settings given outright.
  public init(endpoint: String, token: String? = nil, offline: Bool = false) {
    var endpoint = endpoint
    while endpoint.hasSuffix("/") { endpoint.removeLast() }
    self.endpoint = endpoint
    self.token = token
    self.offline = offline
  }

  /// The settings of this process's environment.
  ///
  /// `HF_ENDPOINT`; `HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`), else the file
  /// `$HF_TOKEN_PATH`, else `$HF_HOME/token`, else `~/.cache/huggingface/token`;
  /// `HF_HUB_OFFLINE`. Empty values count as unset.
  public static func fromEnvironment() -> HubSettings {
    let endpoint = FileSystem.environment("HF_ENDPOINT") ?? "https://huggingface.co"
    let offline = FileSystem.environment("HF_HUB_OFFLINE").map {
      ["1", "ON", "YES", "TRUE"].contains($0.uppercased())
    }
    return HubSettings(endpoint: endpoint, token: tokenFromEnvironment(), offline: offline ?? false)
  }

  static func tokenFromEnvironment() -> String? {
    if let token = FileSystem.environment("HF_TOKEN")
      ?? FileSystem.environment("HUGGING_FACE_HUB_TOKEN")
    {
      return token.trimmingWhiteSpace()
    }
    let file =
      FileSystem.environment("HF_TOKEN_PATH").map(FileSystem.expandingHome)
      ?? FileSystem.join(
        FileSystem.environment("HF_HOME").map(FileSystem.expandingHome)
          ?? FileSystem.expandingHome("~/.cache/huggingface"), "token")
    guard let bytes = try? FileSystem.read(file, limit: 4096),
      let text = String(validating: bytes, as: UTF8.self)
    else { return nil }
    let token = text.trimmingWhiteSpace()
    return token.isEmpty ? nil : token
  }
}
