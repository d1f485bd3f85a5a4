// The `gridsync` Android library: generated Kotlin in src/main/kotlin (packages org.gridsync
// and org.gridsync.core, the core's records and enums)
// and libgridsync.so per ABI in src/main/jniLibs, both produced by
// bindings/scripts/build-android.sh (cargo-ndk). Publish with `./gradlew publishToMavenLocal`
// or include this directory in an app build with `includeBuild("path/to/bindings/android")`.
plugins {
    id("com.android.library") version "8.5.2"
    id("org.jetbrains.kotlin.android") version "2.0.20"
    `maven-publish`
}

group = "org.gridsync"
version = "0.1.0"

android {
    namespace = "org.gridsync"
    compileSdk = 34

    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
        ndk {
            // Must match the ABIs built by bindings/scripts/build-android.sh.
            abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64")
        }
    }

    sourceSets["main"].apply {
        java.srcDirs("src/main/kotlin")
        jniLibs.srcDirs("src/main/jniLibs")
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    publishing {
        singleVariant("release") { withSourcesJar() }
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // uniffi's Kotlin bindings call the native library through JNA (the AAR carries
    // libjnidispatch.so for each ABI).
    implementation("net.java.dev.jna:jna:5.14.0@aar")
    // GridStore calls block: apps run them on Dispatchers.IO.
    api("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.8.1")
}

publishing {
    publications {
        register<MavenPublication>("release") {
            artifactId = "gridsync"
            afterEvaluate { from(components["release"]) }
        }
    }
}
