import CCrypto

/// SHA-256 through the system's libcrypto (OpenSSL's EVP interface), fed in pieces.
public final class SHA256 {
  private let context: OpaquePointer

  /// A digest of nothing yet.
  public init() {
    guard let context = EVP_MD_CTX_new() else { fatalError("libcrypto cannot allocate a digest") }
    self.context = context
    EVP_DigestInit_ex(context, EVP_sha256(), nil)
  }

  deinit { EVP_MD_CTX_free(context) }

  /// Adds `bytes` to the digest.
  public func update(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
    EVP_DigestUpdate(context, base, bytes.count)
  }

  /// Adds `bytes` to the digest.
  public func update(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { update($0) }
  }

  /// The digest as 64 lowercase hexadecimal digits (the digest cannot be fed after this).
  public func hexDigest() -> String {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    EVP_DigestFinal_ex(context, &digest, &length)
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(64)
    for b in digest.prefix(Int(length)) {
      out.append(digits[Int(b >> 4)])
      out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// The SHA-256 of `bytes`, in hexadecimal.
  public static func hex(_ bytes: [UInt8]) -> String {
    let h = SHA256()
    h.update(bytes)
    return h.hexDigest()
  }
}
